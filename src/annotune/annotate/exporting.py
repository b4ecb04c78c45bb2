"""Turning reviewed annotations into training data that ``annotune data validate`` accepts.

By default only accepted annotations are exported (``include_pending`` adds ones not reviewed yet; rejected
ones never leave); ``changed_only`` leaves out model drafts submitted unchanged. Where several annotators did one record, scores are averaged and choices and labels go
by majority; a record without a majority is left out. Identical examples are written once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotune.annotate import schema
from annotune.annotate.errors import Invalid
from annotune.annotate.store import Project
from annotune.conversation import Conversation, Message
from annotune.dataset.formats import write_dataset
from annotune.errors import DataError

EXPORT_FORMATS = ("openai", "alpaca", "sharegpt", "preference")
SUPERVISED = ("openai", "alpaca", "sharegpt")
DEFAULT_MIN_SCORE = 4.0  # rate projects: the lowest mean score exported for fine-tuning


def _conversation(messages: list[dict[str, str]], answer: str, meta: dict[str, Any]) -> Conversation:
    return Conversation([*(Message(m["role"], m["content"]) for m in messages), Message("assistant", answer)], meta)


def _by_record(conn: Connection, project: Project, include_pending: bool,
               changed_only: bool = False) -> list[tuple[Any, list[Any]]]:
    ann, rec, users = schema.annotations, schema.records, schema.users
    statuses = ["accepted", "pending"] if include_pending else ["accepted"]
    query = (sa.select(ann.c.id, ann.c.value, ann.c.record_id, users.c.name.label("annotator"), rec.c.payload,
                       rec.c.source)
             .join(users, users.c.id == ann.c.user_id).join(rec, rec.c.id == ann.c.record_id)
             .where(ann.c.project_id == project.id, ann.c.status.in_(statuses)))
    if changed_only:  # NULL: written without a draft, kept
        query = query.where(sa.or_(ann.c.suggestion_changed.is_(None), ann.c.suggestion_changed.is_(True)))
    rows = conn.execute(query.order_by(ann.c.record_id, ann.c.id))
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.record_id].append(row)
    return [(group[0], group) for group in grouped.values()]


def _majority(values: list[Any]) -> Any:
    counts = Counter(values).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def _meta(project: Project, record: Any, **extra: Any) -> dict[str, Any]:
    meta = {"id": f"{project.name}-{record.record_id}", **extra}
    if record.source:
        meta["source"] = record.source
    return meta


def _write_rows(project: Project, groups: list[tuple[Any, list[Any]]]) -> list[Conversation]:
    out = []
    for record, group in groups:
        for row in group:
            for i, pair in enumerate(row.value["pairs"]):
                meta = {**_meta(project, record, annotator=row.annotator), "id": f"{project.name}-{row.id}-{i}"}
                out.append(_conversation([{"role": "user", "content": pair["question"]}], pair["answer"], meta))
    return out


def _correct_rows(project: Project, groups: list[tuple[Any, list[Any]]]) -> list[Conversation]:
    out = []
    for record, group in groups:
        for row in group:
            if row.value["verdict"] == "rejected":
                continue
            messages = [*record.payload.get("messages", []), {"role": "user", "content": row.value["question"]}]
            meta = {**_meta(project, record, annotator=row.annotator), "id": f"{project.name}-{row.id}"}
            out.append(_conversation(messages, row.value["answer"], meta))
    return out


def _rate_rows(project: Project, groups: list[tuple[Any, list[Any]]], min_score: float) -> list[Conversation]:
    out = []
    for record, group in groups:
        mean = sum(row.value["score"] for row in group) / len(group)
        if mean >= min_score:
            meta = _meta(project, record, score=round(mean, 3), model=record.payload.get("model"))
            out.append(_conversation(record.payload["messages"], record.payload["answer"], meta))
    return out


def _rate_preferences(project: Project, groups: list[tuple[Any, list[Any]]]) -> list[Conversation]:
    """Answers rated on the same prompt: the best-rated one is chosen over the worst-rated one."""
    by_prompt: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for record, group in groups:
        mean = sum(row.value["score"] for row in group) / len(group)
        by_prompt[repr(record.payload["messages"])].append((mean, record))
    out = []
    for rated in by_prompt.values():
        rated.sort(key=lambda item: item[0])
        (low, worst), (high, best) = rated[0], rated[-1]
        if high > low:
            meta = _meta(project, best, rejected=worst.payload["answer"])
            out.append(_conversation(best.payload["messages"], best.payload["answer"], meta))
    return out


def _compare_rows(project: Project, groups: list[tuple[Any, list[Any]]], to: str) -> list[Conversation]:
    out = []
    for record, group in groups:
        winner = _majority([row.value["choice"] for row in group if row.value["choice"] != "tie"])
        if winner is None:
            continue
        answers = record.payload["answers"]
        chosen, rejected = answers[winner], answers[1 - winner]
        extra = {"rejected": rejected["content"]} if to == "preference" else {}
        meta = _meta(project, record, chosen_model=chosen.get("model"), rejected_model=rejected.get("model"), **extra)
        out.append(_conversation(record.payload["messages"], chosen["content"], meta))
    return out


def _label_rows(project: Project, groups: list[tuple[Any, list[Any]]]) -> list[Conversation]:
    out = []
    for record, group in groups:
        label = _majority([row.value["label"] for row in group])
        if label is not None:
            out.append(_conversation([{"role": "user", "content": record.payload["text"]}], label,
                                     _meta(project, record)))
    return out


def export_conversations(conn: Connection, project: Project, to: str, include_pending: bool = False,
                         min_score: float | None = None, changed_only: bool = False) -> list[Conversation]:
    """``min_score`` (rate projects exported for fine-tuning; default 4): the lowest mean score kept."""
    if to not in EXPORT_FORMATS:
        raise Invalid("to", f"must be one of {', '.join(EXPORT_FORMATS)}, got {to!r}")
    if min_score is not None and (project.task_type != "rate" or to == "preference"):
        raise Invalid("min_score", "only applies to rate projects exported as openai, alpaca or sharegpt; "
                      "leave it out")
    if changed_only and project.task_type not in ("write", "correct"):
        raise Invalid("changed_only", "only write and correct projects have drafts to leave out; leave it out")
    groups = _by_record(conn, project, include_pending, changed_only)
    kind = project.task_type
    if to == "preference" and kind not in ("compare", "rate"):
        raise Invalid("to", f"a {kind} project has no preference pairs; export openai, alpaca or sharegpt "
                      "(compare and rate projects give preference data)")
    if kind == "write":
        return _write_rows(project, groups)
    if kind == "correct":
        return _correct_rows(project, groups)
    if kind == "rate":
        if to == "preference":
            return _rate_preferences(project, groups)
        return _rate_rows(project, groups, DEFAULT_MIN_SCORE if min_score is None else min_score)
    if kind == "compare":
        return _compare_rows(project, groups, to)
    return _label_rows(project, groups)


def _unique(conversations: list[Conversation]) -> list[Conversation]:
    """Identical examples (two annotators wrote the same pair) are written once: duplicates only reweight."""
    seen: set[tuple] = set()
    kept = []
    for conversation in conversations:
        key = (tuple((m.role, m.content) for m in conversation.messages), conversation.meta.get("rejected"))
        if key not in seen:
            seen.add(key)
            kept.append(conversation)
    return kept


def export_project(conn: Connection, project: Project, to: str, out: str | Path, include_pending: bool = False,
                   min_score: float | None = None, changed_only: bool = False) -> int:
    """Write the project's training data to ``out`` (atomically); returns the number of examples."""
    conversations = _unique(export_conversations(conn, project, to, include_pending, min_score, changed_only))
    if not conversations:
        hint = "" if include_pending else " accepted; review the pending ones or pass --include-pending"
        raise DataError(f"project {project.name!r} has nothing to export as {to} yet (no annotations{hint})")
    write_dataset(conversations, out, to)
    return len(conversations)
