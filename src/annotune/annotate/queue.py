"""Handing out tasks: leases, submits and skips.

A record needs ``overlap`` annotations. Its places are taken by submitted annotations and by live leases;
``next_task`` leases a record only while places are free, so two annotators never hold the same place, and
the one-row-per-(record, user) constraint means nobody gets a record twice. A record with all its
annotations is ``done`` and leaves every queue. A lease that expires frees its place; a late submit is
still accepted while a place is free, else it gets a 409 that says so.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotune.annotate import schema, tasks
from annotune.annotate.errors import Conflict, NotFound
from annotune.annotate.store import Project, User

LEASE_SECONDS = 30 * 60

r, a, ann = schema.records, schema.assignments, schema.annotations


@dataclass
class Task:
    """One leased record as the annotator sees it."""

    assignment_id: int
    record_id: int
    task_type: str
    payload: dict[str, Any]
    source: dict[str, Any] | None
    expires_at: float
    swap: bool = False

    def shown_answers(self) -> list[tuple[int, dict[str, Any]]]:
        """compare: (index into the record's answers, answer) in the order this annotator sees them."""
        answers = list(enumerate(self.payload.get("answers", [])))
        return answers[::-1] if self.swap else answers

    def to_json(self) -> dict[str, Any]:
        out = {"assignment_id": self.assignment_id, "record_id": self.record_id, "task_type": self.task_type,
               "payload": self.payload, "source": self.source, "expires_at": self.expires_at}
        if self.task_type == "compare":
            out["shown_order"] = [index for index, _ in self.shown_answers()]
        return out


def _others_holding(record_id: Any, user: User, now: float) -> Any:
    return (sa.select(sa.func.count()).select_from(a)
            .where(a.c.record_id == record_id, a.c.status == "leased", a.c.expires_at > now, a.c.user_id != user.id)
            .scalar_subquery())


def _task(conn: Connection, project: Project, assignment: Any) -> Task:
    record = conn.execute(sa.select(r).where(r.c.id == assignment.record_id)).one()
    return Task(assignment.id, record.id, project.task_type, record.payload, record.source,
                assignment.expires_at, bool(assignment.swap))


def _current_lease(conn: Connection, project: Project, user: User, now: float) -> Any:
    return conn.execute(
        sa.select(a).join(r, r.c.id == a.c.record_id)
        .where(a.c.project_id == project.id, a.c.user_id == user.id, a.c.status == "leased",
               a.c.expires_at > now, r.c.status == "open")
        .order_by(a.c.id).limit(1)).first()


def _has_room(conn: Connection, project: Project, user: User, record_id: int, now: float) -> bool:
    """Checked again after the row lock is held, in a statement of its own: under PostgreSQL's READ COMMITTED
    the statement that took the lock may have counted leases from a snapshot older than the lock."""
    row = conn.execute(sa.select(r.c.status, r.c.submitted, _others_holding(r.c.id, user, now).label("held"))
                       .where(r.c.id == record_id)).one()
    return row.status == "open" and row.submitted + row.held < project.overlap


def _pick_record(conn: Connection, project: Project, user: User, now: float) -> int | None:
    mine = sa.exists().where(a.c.record_id == r.c.id, a.c.user_id == user.id,
                             sa.or_(a.c.status != "leased", a.c.expires_at > now))
    passed: list[int] = []
    while True:
        query = (sa.select(r.c.id).where(r.c.project_id == project.id, r.c.status == "open", ~mine,
                                         r.c.submitted + _others_holding(r.c.id, user, now) < project.overlap,
                                         r.c.id.not_in(passed))
                 .order_by(r.c.id).limit(1))
        record_id = None
        if conn.dialect.name == "postgresql":
            # Concurrent requests lease different records instead of queueing on one (SQLite serialises writers).
            record_id = conn.execute(query.with_for_update(skip_locked=True, of=r)).scalar()
            if record_id is None:
                # Only rows locked by others were left: wait for them, so "nothing left" is a true answer.
                query = query.with_for_update(of=r)
        if record_id is None:
            record_id = conn.execute(query).scalar()
        if record_id is None or _has_room(conn, project, user, record_id, now):
            return record_id
        passed.append(record_id)


def next_task(conn: Connection, project: Project, user: User, lease_seconds: float = LEASE_SECONDS) -> Task | None:
    """The user's current task, else a newly leased one, else None when nothing is left for them."""
    now = time.time()
    current = _current_lease(conn, project, user, now)
    if current is not None:
        return _task(conn, project, current)
    record_id = _pick_record(conn, project, user, now)
    if record_id is None:
        return None
    expires = now + lease_seconds
    swap = random.random() < 0.5
    updated = conn.execute(a.update().where(a.c.record_id == record_id, a.c.user_id == user.id)
                           .values(status="leased", expires_at=expires))
    if updated.rowcount == 0:  # no expired lease of this user's to renew
        conn.execute(a.insert().values(record_id=record_id, project_id=project.id, user_id=user.id,
                                       status="leased", expires_at=expires, swap=swap))
    assignment = conn.execute(sa.select(a).where(a.c.record_id == record_id, a.c.user_id == user.id)).one()
    return _task(conn, project, assignment)


def _own_assignment(conn: Connection, project: Project, user: User, assignment_id: int) -> Any:
    query = sa.select(a).where(a.c.id == assignment_id, a.c.project_id == project.id, a.c.user_id == user.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no task {assignment_id} of yours in project {project.name!r}")
    if row.status == "submitted":
        raise Conflict(f"task {assignment_id} is already submitted; edit your annotation instead")
    if row.status == "skipped":
        raise Conflict(f"you skipped task {assignment_id}; it cannot be submitted any more")
    return row


def _locked_record(conn: Connection, record_id: int) -> Any:
    query = sa.select(r).where(r.c.id == record_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).one()


def submit(conn: Connection, project: Project, user: User, assignment_id: int, value: Any) -> dict[str, Any]:
    """Store the annotation for a leased task, in the caller's transaction; returns its id and version."""
    assignment = _own_assignment(conn, project, user, assignment_id)
    checked = tasks.check_value(project.task_type, value, project.labels)
    now = time.time()
    record = _locked_record(conn, assignment.record_id)
    if assignment.expires_at <= now:
        held = conn.execute(sa.select(_others_holding(record.id, user, now))).scalar()
        if record.status == "done" or record.submitted + held >= project.overlap:
            raise Conflict(f"your lease on task {assignment_id} expired and other annotators took its places; "
                           "your answer was not saved: copy it if you need it, then open the next task")
    result = conn.execute(ann.insert().values(
        record_id=record.id, project_id=project.id, assignment_id=assignment.id, user_id=user.id,
        value=checked, status="pending", version=1, created_at=now, updated_at=now, updated_by=user.id))
    conn.execute(a.update().where(a.c.id == assignment.id).values(status="submitted"))
    submitted = record.submitted + 1
    conn.execute(r.update().where(r.c.id == record.id).values(
        submitted=submitted, status="done" if submitted >= project.overlap else "open"))
    return {"annotation_id": result.inserted_primary_key[0], "version": 1, "record_id": record.id}


def skip(conn: Connection, project: Project, user: User, assignment_id: int) -> None:
    """Give the task back: its place is free for others and this user will not get it again."""
    assignment = _own_assignment(conn, project, user, assignment_id)
    conn.execute(a.update().where(a.c.id == assignment.id).values(status="skipped"))
