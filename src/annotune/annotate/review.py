"""Reading, editing and reviewing annotations, with optimistic concurrency.

Every change names the ``version`` it was made against; a stale version gets :class:`Conflict` (HTTP 409)
and nothing is written, so two people editing the same annotation never overwrite each other silently.
A rejected annotation gives its place on the record back, so the record goes to someone else.

The review queue hands each pending annotation to one reviewer at a time, under a lease like the annotation
queue's, and never to its own author unless the project allows self-review.
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
REVIEW_LEASE_SECONDS = 15 * 60


def _row_to_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "record_id": row.record_id, "annotator": row.annotator, "value": row.value,
            "status": row.status, "version": row.version, "review_comment": row.review_comment,
            "created_at": row.created_at, "updated_at": row.updated_at, "payload": row.payload,
            "source": row.source, "suggestion_changed": row.suggestion_changed,
            "review_lease_expires": row.review_lease_expires}


def _select() -> sa.Select:
    return (sa.select(ann, u.c.name.label("annotator"), r.c.payload, r.c.source)
            .join(u, u.c.id == ann.c.user_id).join(r, r.c.id == ann.c.record_id))


def list_annotations(conn: Connection, project: Project, user: User, status: str | None = None,
                     limit: int = 100, offset: int = 0, mine: bool = False) -> list[dict[str, Any]]:
    """Annotations of the project, oldest first; annotators see only their own. ``mine``: the user's own,
    newest first."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
    query = _select().where(ann.c.project_id == project.id)
    if mine or not user.can_review:
        query = query.where(ann.c.user_id == user.id)
    if status:
        query = query.where(ann.c.status == status)
    order = ann.c.id.desc() if mine else ann.c.id
    rows = conn.execute(query.order_by(order).limit(max(1, min(limit, 1000))).offset(max(0, offset)))
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
    if current["annotator"] == user.name and not project.self_review:
        raise Forbidden(f"annotation {annotation_id} is your own; another reviewer decides on it (an admin can "
                        f"allow self-review for {project.name!r} in the project settings)")
    values: dict[str, Any] = {"review_comment": (comment or "").strip(),
                              "status": "rejected" if decision == "reject" else "accepted",
                              "review_lease_user": None, "review_lease_expires": None}
    if decision == "edit":
        values["value"] = tasks.check_value(project.task_type, value, project.labels)
    new_version = _write(conn, current, version, values, user)
    was_rejected, now_rejected = current["status"] == "rejected", values["status"] == "rejected"
    if was_rejected != now_rejected:
        _move_place(conn, project, current["record_id"], -1 if now_rejected else +1)
    return {"id": annotation_id, "version": new_version, "status": values["status"]}


def _free_for(user: User, now: float) -> sa.ColumnElement:
    """Not under another reviewer's live review lease."""
    return sa.or_(ann.c.review_lease_expires.is_(None), ann.c.review_lease_expires <= now,
                  ann.c.review_lease_user == user.id)


def _reviewable(project: Project, user: User, now: float) -> sa.Select:
    """Pending annotations this reviewer may take: not leased to another reviewer, not their own (unless the
    project allows self-review); their own current lease first."""
    query = sa.select(ann.c.id).where(ann.c.project_id == project.id, ann.c.status == "pending",
                                      _free_for(user, now))
    if not project.self_review:
        query = query.where(ann.c.user_id != user.id)
    return query.order_by(sa.case((ann.c.review_lease_user == user.id, 0), else_=1), ann.c.id).limit(1)


def next_for_review(conn: Connection, project: Project, user: User,
                    lease_seconds: float = REVIEW_LEASE_SECONDS, now: float | None = None) -> dict[str, Any] | None:
    """The reviewer's current annotation, else the next free one leased to them, else None."""
    if not user.can_review:
        raise Forbidden("reviewing needs the reviewer or admin role")
    now = time.time() if now is None else now
    while True:
        query = _reviewable(project, user, now)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = conn.execute(query).first()
        if found is None:
            return None
        # Taken only if still free when written: two reviewers racing for one annotation get different ones.
        taken = conn.execute(ann.update().where(ann.c.id == found.id, ann.c.status == "pending",
                                                _free_for(user, now)).values(
            review_lease_user=user.id, review_lease_expires=now + lease_seconds))
        if taken.rowcount == 1:
            return get_annotation(conn, project, user, found.id)


def current_review(conn: Connection, project: Project, user: User, now: float | None = None) -> dict[str, Any] | None:
    """The annotation leased to this reviewer right now, without taking a new one."""
    now = time.time() if now is None else now
    row = conn.execute(sa.select(ann.c.id).where(
        ann.c.project_id == project.id, ann.c.status == "pending", ann.c.review_lease_user == user.id,
        ann.c.review_lease_expires > now).order_by(ann.c.id).limit(1)).first()
    return get_annotation(conn, project, user, row.id) if row is not None else None


def queue_counts(conn: Connection, project: Project, user: User, now: float | None = None) -> dict[str, int]:
    """Pending annotations as this reviewer's queue sees them: ``free`` to take, ``own`` (someone else
    reviews them), ``leased`` to other reviewers right now."""
    now = time.time() if now is None else now
    own = ann.c.user_id == user.id if not project.self_review else sa.false()
    leased = sa.and_(ann.c.review_lease_expires > now, ann.c.review_lease_user != user.id)
    kind = sa.case((own, "own"), (leased, "leased"), else_="free")
    rows = conn.execute(sa.select(kind.label("kind"), sa.func.count()).where(
        ann.c.project_id == project.id, ann.c.status == "pending").group_by(kind))
    return {"free": 0, "own": 0, "leased": 0, **{row.kind: row[1] for row in rows}}


def release_review(conn: Connection, project: Project, user: User, annotation_id: int) -> None:
    """Give a review back (skip it for now): another reviewer may take it at once."""
    conn.execute(ann.update().where(ann.c.id == annotation_id, ann.c.project_id == project.id,
                                    ann.c.review_lease_user == user.id).values(
        review_lease_user=None, review_lease_expires=None))
