"""Reading, editing and reviewing annotations, with optimistic concurrency.

Every change names the ``version`` it was made against; a stale version gets :class:`Conflict` (HTTP 409)
and nothing is written, so two people editing the same annotation never overwrite each other silently.
A rejected annotation gives its place on the record back, so the record goes to someone else.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotune.annotate import schema, tasks
from annotune.annotate.errors import Conflict, Forbidden, Invalid, NotFound
from annotune.annotate.store import Project, User

DECISIONS = ("accept", "reject", "edit")
STATUSES = ("pending", "accepted", "rejected")

ann, r, u = schema.annotations, schema.records, schema.users


def _row_to_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "record_id": row.record_id, "annotator": row.annotator, "value": row.value,
            "status": row.status, "version": row.version, "review_comment": row.review_comment,
            "created_at": row.created_at, "updated_at": row.updated_at, "payload": row.payload,
            "source": row.source}


def _select() -> sa.Select:
    return (sa.select(ann, u.c.name.label("annotator"), r.c.payload, r.c.source)
            .join(u, u.c.id == ann.c.user_id).join(r, r.c.id == ann.c.record_id))


def list_annotations(conn: Connection, project: Project, user: User, status: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Annotations of the project, oldest first; annotators see only their own."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
    query = _select().where(ann.c.project_id == project.id)
    if not user.can_review:
        query = query.where(ann.c.user_id == user.id)
    if status:
        query = query.where(ann.c.status == status)
    rows = conn.execute(query.order_by(ann.c.id).limit(max(1, min(limit, 1000))).offset(max(0, offset)))
    return [_row_to_json(row) for row in rows]


def get_annotation(conn: Connection, project: Project, user: User, annotation_id: int) -> dict[str, Any]:
    row = conn.execute(_select().where(ann.c.id == annotation_id, ann.c.project_id == project.id)).first()
    if row is None or (not user.can_review and row.user_id != user.id):
        raise NotFound(f"no annotation {annotation_id} in project {project.name!r} that you can see")
    return _row_to_json(row)


def _write(conn: Connection, current: dict[str, Any], version: Any, values: dict[str, Any], user: User) -> int:
    if not isinstance(version, int) or isinstance(version, bool):
        raise Invalid("version", "send the version of the annotation you edited (a whole number)")
    new_version = version + 1
    result = conn.execute(ann.update().where(ann.c.id == current["id"], ann.c.version == version).values(
        **values, version=new_version, updated_at=time.time(), updated_by=user.id))
    if result.rowcount == 0:
        latest = conn.execute(sa.select(ann.c.version, ann.c.updated_by, u.c.name)
                              .join(u, u.c.id == ann.c.updated_by, isouter=True)
                              .where(ann.c.id == current["id"])).one()
        raise Conflict(f"annotation {current['id']} was changed by {latest.name or 'someone'} since you opened it "
                       f"(you edited version {version}, it is now version {latest.version}); reload it and "
                       "apply your change again")
    return new_version


def edit(conn: Connection, project: Project, user: User, annotation_id: int, value: Any,
         version: Any) -> dict[str, Any]:
    """An annotator fixes their own pending annotation (reviewers use :func:`review` with ``edit``)."""
    current = get_annotation(conn, project, user, annotation_id)
    if not user.can_review and current["status"] != "pending":
        raise Forbidden(f"annotation {annotation_id} is already {current['status']}; ask a reviewer to change it")
    checked = tasks.check_value(project.task_type, value, project.labels)
    new_version = _write(conn, current, version, {"value": checked}, user)
    return {"id": annotation_id, "version": new_version, "status": current["status"]}


def _move_place(conn: Connection, project: Project, record_id: int, delta: int) -> None:
    """Rejecting frees a place on the record (delta -1); un-rejecting takes one again (+1)."""
    record = conn.execute(sa.select(r.c.submitted).where(r.c.id == record_id)).one()
    submitted = max(0, record.submitted + delta)
    conn.execute(r.update().where(r.c.id == record_id).values(
        submitted=submitted, status="done" if submitted >= project.overlap else "open"))


def review(conn: Connection, project: Project, user: User, annotation_id: int, decision: str, version: Any,
           value: Any = None, comment: str = "") -> dict[str, Any]:
    """accept, reject, or edit-and-accept an annotation; returns its new status and version."""
    if not user.can_review:
        raise Forbidden("reviewing needs the reviewer or admin role")
    if decision not in DECISIONS:
        raise Invalid("decision", f"must be one of {', '.join(DECISIONS)}, got {decision!r}")
    current = get_annotation(conn, project, user, annotation_id)
    values: dict[str, Any] = {"review_comment": (comment or "").strip(),
                              "status": "rejected" if decision == "reject" else "accepted"}
    if decision == "edit":
        values["value"] = tasks.check_value(project.task_type, value, project.labels)
    new_version = _write(conn, current, version, values, user)
    was_rejected, now_rejected = current["status"] == "rejected", values["status"] == "rejected"
    if was_rejected != now_rejected:
        _move_place(conn, project, current["record_id"], -1 if now_rejected else +1)
    return {"id": annotation_id, "version": new_version, "status": values["status"]}


def next_for_review(conn: Connection, project: Project, user: User) -> dict[str, Any] | None:
    if not user.can_review:
        raise Forbidden("reviewing needs the reviewer or admin role")
    pending = list_annotations(conn, project, user, status="pending", limit=1)
    return pending[0] if pending else None
