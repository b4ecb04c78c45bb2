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
from sqlalchemy.dialects import postgresql, sqlite
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


# The hot path's statements are built once, with bind parameters: building a statement costs several times
# more CPU than running it on SQLite, and these run on every request.
P_PROJECT, P_USER, P_NOW, P_RECORD = (sa.bindparam(n) for n in ("project", "user", "now", "record"))
_OTHERS_HOLDING = (sa.select(sa.func.count()).select_from(a)
                   .where(a.c.record_id == r.c.id, a.c.status == "leased", a.c.expires_at > P_NOW,
                          a.c.user_id != P_USER)
                   .scalar_subquery())
_TASK = (sa.select(a.c.id, a.c.expires_at, a.c.swap, r.c.id.label("record_id"), r.c.payload, r.c.source)
         .join(r, r.c.id == a.c.record_id).where(a.c.project_id == P_PROJECT, a.c.user_id == P_USER))
_CURRENT_LEASE = (_TASK.where(a.c.status == "leased", a.c.expires_at > P_NOW, r.c.status == "open")
                  .order_by(a.c.id).limit(1))
_ASSIGNED = _TASK.where(a.c.id == sa.bindparam("assignment"), a.c.status == "leased")
_ROOM = sa.select(r.c.status, r.c.submitted, _OTHERS_HOLDING.label("held")).where(r.c.id == P_RECORD)
_MINE = sa.exists().where(a.c.record_id == r.c.id, a.c.user_id == P_USER,
                          sa.or_(a.c.status != "leased", a.c.expires_at > P_NOW))
_CANDIDATE = (sa.select(r.c.id, r.c.payload, r.c.source)
              .where(r.c.project_id == P_PROJECT, r.c.status == "open", ~_MINE,
                     r.c.submitted + _OTHERS_HOLDING < sa.bindparam("overlap"),
                     r.c.id.not_in(sa.bindparam("passed", expanding=True)))
              .order_by(r.c.id).limit(1))
_CANDIDATE_SKIP_LOCKED = _CANDIDATE.with_for_update(skip_locked=True, of=r)
_CANDIDATE_WAIT = _CANDIDATE.with_for_update(of=r)


def _lease_statement(dialect: Any) -> Any:
    """Insert the user's lease on a record, or renew their own expired one: one statement either way."""
    insert = dialect.insert(a)
    return (insert.on_conflict_do_update(index_elements=[a.c.record_id, a.c.user_id],
                                         set_={"status": "leased", "expires_at": insert.excluded.expires_at})
            .returning(a.c.id, a.c.swap))


_LEASE = {"postgresql": _lease_statement(postgresql), "sqlite": _lease_statement(sqlite)}
_OWN = (sa.select(a.c.id, a.c.record_id, a.c.status, a.c.expires_at)
        .where(a.c.id == sa.bindparam("assignment"), a.c.project_id == P_PROJECT, a.c.user_id == P_USER))
_LOCKED_RECORD = sa.select(r.c.id, r.c.status, r.c.submitted, r.c.payload).where(r.c.id == P_RECORD)
_ADD_ANNOTATION = ann.insert().returning(ann.c.id)
_MARK_SUBMITTED = a.update().where(a.c.id == sa.bindparam("assignment")).values(status="submitted")
_COUNT_SUBMIT = r.update().where(r.c.id == P_RECORD).values(submitted=sa.bindparam("submitted"),
                                                          status=sa.bindparam("status"))


def _has_room(conn: Connection, project: Project, user: User, record_id: int, now: float) -> bool:
    """Checked again after the row lock is held, in a statement of its own: under PostgreSQL's READ COMMITTED
    the statement that took the lock may have counted leases from a snapshot older than the lock."""
    row = conn.execute(_ROOM, {"record": record_id, "user": user.id, "now": now}).one()
    return row.status == "open" and row.submitted + row.held < project.overlap


def _pick_record(conn: Connection, project: Project, user: User, now: float) -> Any:
    params: dict[str, Any] = {"project": project.id, "user": user.id, "now": now, "overlap": project.overlap,
                              "passed": [-1]}
    while True:
        record = None
        wait = _CANDIDATE
        if conn.dialect.name == "postgresql":
            # Concurrent requests lease different records instead of queueing on one (SQLite serialises writers).
            record = conn.execute(_CANDIDATE_SKIP_LOCKED, params).first()
            # Only rows locked by others were left: wait for them, so "nothing left" is a true answer.
            wait = _CANDIDATE_WAIT
        if record is None:
            record = conn.execute(wait, params).first()
        if record is None or _has_room(conn, project, user, record.id, now):
            return record
        params["passed"] = [*params["passed"], record.id]


def _row_task(project: Project, row: Any) -> Task:
    return Task(row.id, row.record_id, project.task_type, row.payload, row.source, row.expires_at, bool(row.swap))


def leased_task(conn: Connection, project: Project, user: User, assignment_id: int) -> Task | None:
    """The user's task ``assignment_id`` while it is leased to them (expired or not), else None."""
    row = conn.execute(_ASSIGNED, {"project": project.id, "user": user.id, "assignment": assignment_id}).first()
    return _row_task(project, row) if row is not None else None


def current_task(conn: Connection, project: Project, user: User, now: float | None = None) -> Task | None:
    """The user's live lease in ``project``, if any; leases nothing."""
    now = time.time() if now is None else now
    row = conn.execute(_CURRENT_LEASE, {"project": project.id, "user": user.id, "now": now}).first()
    return _row_task(project, row) if row is not None else None


def has_work(conn: Connection, project: Project, user: User) -> bool:
    """Whether :func:`next_task` would likely find a record for the user now (a read, no lease, no lock)."""
    params = {"project": project.id, "user": user.id, "now": time.time(), "overlap": project.overlap,
              "passed": [-1]}
    return conn.execute(_CANDIDATE, params).first() is not None


def next_task(conn: Connection, project: Project, user: User, lease_seconds: float = LEASE_SECONDS,
              now: float | None = None) -> Task | None:
    """The user's current task, else a newly leased one, else None when nothing is left for them.

    ``now`` (seconds since the epoch) defaults to the clock; tests pass their own."""
    now = time.time() if now is None else now
    current = current_task(conn, project, user, now)
    if current is not None:
        return current
    record = _pick_record(conn, project, user, now)
    if record is None:
        return None
    expires = now + lease_seconds
    # A user's own expired lease on the record keeps its row (and its answer order) and is renewed.
    lease = conn.execute(_LEASE[conn.dialect.name], {
        "record_id": record.id, "project_id": project.id, "user_id": user.id, "status": "leased",
        "expires_at": expires, "swap": random.random() < 0.5}).one()
    return Task(lease.id, record.id, project.task_type, record.payload, record.source, expires, bool(lease.swap))


def _locked_assignment(conn: Connection, project: Project, user: User, assignment_id: int) -> Any:
    """The user's assignment ``assignment_id``, locked for this transaction, whatever its status."""
    query = _OWN.with_for_update() if conn.dialect.name == "postgresql" else _OWN
    row = conn.execute(query, {"assignment": assignment_id, "project": project.id, "user": user.id}).first()
    if row is None:
        raise NotFound(f"no task {assignment_id} of yours in project {project.name!r}")
    return row


def _own_assignment(conn: Connection, project: Project, user: User, assignment_id: int) -> Any:
    row = _locked_assignment(conn, project, user, assignment_id)
    if row.status == "submitted":
        raise Conflict(f"task {assignment_id} is already submitted; edit your annotation instead")
    if row.status == "skipped":
        raise Conflict(f"you skipped task {assignment_id}; it cannot be submitted any more")
    return row


def _locked_record(conn: Connection, record_id: int) -> Any:
    query = _LOCKED_RECORD.with_for_update() if conn.dialect.name == "postgresql" else _LOCKED_RECORD
    return conn.execute(query, {"record": record_id}).one()


def submit(conn: Connection, project: Project, user: User, assignment_id: int, value: Any,
           now: float | None = None) -> dict[str, Any]:
    """Store the annotation for a leased task, in the caller's transaction; returns its id and version."""
    assignment = _own_assignment(conn, project, user, assignment_id)
    checked = tasks.check_value(project.task_type, value, project.labels)
    now = time.time() if now is None else now
    record = _locked_record(conn, assignment.record_id)
    if assignment.expires_at <= now and (record.status == "done" or
                                         not _has_room(conn, project, user, record.id, now)):
        raise Conflict(f"your lease on task {assignment_id} expired and other annotators took its places; "
                       "your answer was not saved: copy it if you need it, then open the next task")
    annotation_id = conn.execute(_ADD_ANNOTATION, {
        "record_id": record.id, "project_id": project.id, "assignment_id": assignment.id, "user_id": user.id,
        "value": checked, "status": "pending", "version": 1, "created_at": now, "updated_at": now,
        "updated_by": user.id,
        "suggestion_changed": tasks.suggestion_changed(project.task_type, record.payload, checked)}).scalar_one()
    conn.execute(_MARK_SUBMITTED, {"assignment": assignment.id})
    submitted = record.submitted + 1
    conn.execute(_COUNT_SUBMIT, {"record": record.id, "submitted": submitted,
                                 "status": "done" if submitted >= project.overlap else "open"})
    return {"annotation_id": annotation_id, "version": 1, "record_id": record.id}


def skip(conn: Connection, project: Project, user: User, assignment_id: int) -> None:
    """Give the task back: its place is free for others and this user will not get it again."""
    assignment = _own_assignment(conn, project, user, assignment_id)
    conn.execute(a.update().where(a.c.id == assignment.id).values(status="skipped"))


def unskip(conn: Connection, project: Project, user: User, assignment_id: int,
           lease_seconds: float = LEASE_SECONDS, now: float | None = None) -> Task:
    """Undo a skip: the task is the user's again, under a new lease, while the record still has a free place;
    the task leased to them after the skip is given back."""
    now = time.time() if now is None else now
    row = _locked_assignment(conn, project, user, assignment_id)
    if row.status != "skipped":
        raise Conflict(f"task {assignment_id} was not skipped; open it from the project page")
    record = _locked_record(conn, row.record_id)
    if record.status == "done" or not _has_room(conn, project, user, record.id, now):
        raise Conflict(f"task {assignment_id} went to other annotators after you skipped it; it cannot come back")
    # The task that replaced it goes back to the queue: the user holds one task at a time.
    conn.execute(a.update().where(a.c.project_id == project.id, a.c.user_id == user.id, a.c.status == "leased",
                                  a.c.expires_at > now).values(expires_at=now))
    conn.execute(a.update().where(a.c.id == row.id).values(status="leased", expires_at=now + lease_seconds))
    task = conn.execute(_ASSIGNED, {"project": project.id, "user": user.id, "assignment": row.id}).one()
    return _row_task(project, task)


_LEFT = (sa.select(sa.func.count()).select_from(r)
         .where(r.c.project_id == P_PROJECT, r.c.status == "open", ~_MINE))


def left_for(conn: Connection, project: Project, user: User, now: float | None = None) -> dict[str, int]:
    """How much is left for this user: open records they have not done or skipped, of all the project's records
    (their current lease counts as left)."""
    now = time.time() if now is None else now
    left = conn.execute(_LEFT, {"project": project.id, "user": user.id, "now": now}).scalar_one()
    total = conn.execute(sa.select(sa.func.count()).select_from(r).where(
        r.c.project_id == project.id, r.c.status != "draft")).scalar_one()
    return {"left": left + (current_task(conn, project, user, now) is not None), "total": total}
