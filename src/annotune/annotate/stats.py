"""Progress by status, per project and per user, and inter-annotator agreement."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotune.annotate import agreement, schema, tasks
from annotune.annotate.store import Project

rec, ann, asg, users = schema.records, schema.annotations, schema.assignments, schema.users


def progress(conn: Connection, project: Project) -> dict[str, Any]:
    """Records by status, annotations by status, and each member's counts."""
    records = dict(conn.execute(sa.select(rec.c.status, sa.func.count()).where(rec.c.project_id == project.id)
                                .group_by(rec.c.status)).all())
    annotations = dict(conn.execute(sa.select(ann.c.status, sa.func.count()).where(ann.c.project_id == project.id)
                                    .group_by(ann.c.status)).all())
    per_user: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, status, count in conn.execute(
            sa.select(users.c.name, ann.c.status, sa.func.count()).join(users, users.c.id == ann.c.user_id)
            .where(ann.c.project_id == project.id).group_by(users.c.name, ann.c.status)):
        per_user[name][status] += count
        per_user[name]["submitted"] += count
    for name, count in conn.execute(
            sa.select(users.c.name, sa.func.count()).join(users, users.c.id == asg.c.user_id)
            .where(asg.c.project_id == project.id, asg.c.status == "skipped").group_by(users.c.name)):
        per_user[name]["skipped"] += count
    total = sum(records.values())
    return {
        "records": {"total": total, **{s: records.get(s, 0) for s in ("draft", "open", "done")}},
        "annotations": {s: annotations.get(s, 0) for s in ("pending", "accepted", "rejected")},
        "needed": total * project.overlap,
        "per_user": {name: dict(counts) for name, counts in sorted(per_user.items())},
    }


def agreement_units(conn: Connection, project: Project) -> dict[int, dict[str, Any]]:
    """record id -> {annotator: the compared part of their annotation}; rejected annotations left out."""
    units: dict[int, dict[str, Any]] = defaultdict(dict)
    rows = conn.execute(sa.select(ann.c.record_id, ann.c.value, users.c.name)
                        .join(users, users.c.id == ann.c.user_id)
                        .where(ann.c.project_id == project.id, ann.c.status != "rejected"))
    for record_id, value, name in rows:
        units[record_id][name] = tasks.agreement_value(project.task_type, value)
    return units


def project_agreement(conn: Connection, project: Project) -> dict[str, Any]:
    kind = tasks.agreement_kind(project.task_type)
    summary = agreement.summarize(agreement_units(conn, project), kind)  # type: ignore[arg-type]
    return {"measure": kind, **summary}


def project_stats(conn: Connection, project: Project) -> dict[str, Any]:
    return {"project": project.name, "task_type": project.task_type, "overlap": project.overlap,
            "progress": progress(conn, project), "agreement": project_agreement(conn, project)}


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_stats(stats: dict[str, Any]) -> str:
    """The stats as the CLI prints them."""
    p, g = stats["progress"], stats["agreement"]
    rec_counts = p["records"]
    lines = [f"project {stats['project']} ({stats['task_type']}, {stats['overlap']} annotation(s) per record)",
             (f"records: {rec_counts['total']} ({rec_counts['done']} done, {rec_counts['open']} open, "
              f"{rec_counts['draft']} waiting for drafts)"),
             "annotations: " + ", ".join(f"{v} {k}" for k, v in p["annotations"].items()),
             f"agreement ({g['measure']}, {_fmt(g.get('units'))} records with 2+ annotations):"]
    for key in ("krippendorff_alpha", "fleiss_kappa", "percent_agreement", "text_similarity"):
        if key in g:
            lines.append(f"  {key.replace('_', ' ')}: {_fmt(g[key])}")
    kappa = g["measure"] != "text"  # kappa compares categories; written answers have a similarity only
    lines.append(f"  {'annotator':<20} {'submitted':>9} {'accepted':>8} {'rejected':>8} {'skipped':>7} "
                 f"{'agreement':>9}" + (f" {'kappa':>6}" if kappa else ""))
    per_agreement = g.get("per_annotator", {})
    for name, counts in p["per_user"].items():
        mine = per_agreement.get(name, {})
        lines.append(f"  {name:<20} {counts.get('submitted', 0):>9} {counts.get('accepted', 0):>8} "
                     f"{counts.get('rejected', 0):>8} {counts.get('skipped', 0):>7} "
                     f"{_fmt(mine.get('agreement')):>9}" + (f" {_fmt(mine.get('kappa')):>6}" if kappa else ""))
    return "\n".join(lines)
