"""Users, passwords, API tokens, login sessions, projects and membership."""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from annotune.annotate import schema, tasks
from annotune.annotate.db import Database
from annotune.annotate.errors import Conflict, Forbidden, Invalid, NotFound, Throttled, Unauthorized

SESSION_SECONDS = 7 * 24 * 3600
FREE_LOGIN_ATTEMPTS = 5  # failures allowed before each further attempt has to wait
MAX_LOGIN_WAIT = 300  # seconds
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked when the user does not exist, so a wrong name takes as long as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_review(self) -> bool:
        return self.role in ("admin", "reviewer")


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    task_type: str
    guidelines: str
    labels: list[str]
    overlap: int
    self_review: bool = False  # reviewers may accept or reject their own annotations


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name or ""):
        raise Invalid(what, f"{name!r} is not a valid name; use letters, digits and _ . @ - (up to 100)")
    return name


# ------------------------------------------------------------------------------------------------ users


def add_user(conn: Connection, name: str, role: str, password: str) -> User:
    check_name(name, "name")
    if role not in schema.ROLES:
        raise Invalid("role", f"must be one of {', '.join(schema.ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD:
        raise Invalid("password", f"must be at least {MIN_PASSWORD} characters")
    if conn.execute(sa.select(schema.users.c.id).where(schema.users.c.name == name)).first():
        raise Conflict(f"user {name!r} already exists")
    result = conn.execute(schema.users.insert().values(
        name=name, role=role, password_hash=_hasher.hash(password), created_at=time.time()))
    return User(result.inserted_primary_key[0], name, role)


def find_user(conn: Connection, name: str) -> User:
    row = conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()
    if row is None:
        raise NotFound(f"no user {name!r}; add one with `annotune workbench user add {name} --role annotator`")
    return User(row.id, row.name, row.role)


def list_users(conn: Connection) -> list[User]:
    rows = conn.execute(sa.select(schema.users).order_by(schema.users.c.name))
    return [User(r.id, r.name, r.role) for r in rows]


def set_password(conn: Connection, name: str, password: str) -> None:
    user = find_user(conn, name)
    if len(password) < MIN_PASSWORD:
        raise Invalid("password", f"must be at least {MIN_PASSWORD} characters")
    conn.execute(schema.users.update().where(schema.users.c.id == user.id).values(
        password_hash=_hasher.hash(password), failed_logins=0))
    conn.execute(schema.sessions.delete().where(schema.sessions.c.user_id == user.id))


def create_token(conn: Connection, user: User, label: str = "") -> str:
    """A new API token for ``user``; only its hash is stored, so this is the one time it can be read."""
    token = "at_" + secrets.token_urlsafe(32)
    conn.execute(schema.api_tokens.insert().values(
        user_id=user.id, token_hash=_hash_token(token), label=label, created_at=time.time()))
    return token


_USER_FOR_TOKEN = (sa.select(schema.users.c.id, schema.users.c.name, schema.users.c.role)
                   .join(schema.api_tokens, schema.api_tokens.c.user_id == schema.users.c.id)
                   .where(schema.api_tokens.c.token_hash == sa.bindparam("token")))


def user_for_token(conn: Connection, token: str) -> User | None:
    row = conn.execute(_USER_FOR_TOKEN, {"token": _hash_token(token)}).first()
    return User(row.id, row.name, row.role) if row else None


# -------------------------------------------------------------------------------------- login sessions


def _login_wait(failed: int, last_failed_at: float | None, now: float) -> int:
    if failed < FREE_LOGIN_ATTEMPTS or last_failed_at is None:
        return 0
    wait = min(2 ** (failed - FREE_LOGIN_ATTEMPTS), MAX_LOGIN_WAIT)
    return max(0, int(last_failed_at + wait - now + 0.999))


def login(db: Database, name: str, password: str) -> tuple[User, str, str]:
    """Check the password; returns (user, session token, CSRF token). Failures slow further attempts."""
    now = time.time()
    with db.transaction() as conn:
        row = conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()
        if row is not None:
            wait = _login_wait(row.failed_logins, row.last_failed_at, now)
            if wait:
                raise Throttled(f"too many failed logins for {name!r}; try again in {wait} s", wait)
    try:
        ok = _hasher.verify(row.password_hash if row else _dummy_hash(), password) and row is not None
    except (VerificationError, InvalidHashError):
        ok = False
    with db.transaction() as conn:
        if not ok:
            if row is not None:
                conn.execute(schema.users.update().where(schema.users.c.id == row.id).values(
                    failed_logins=schema.users.c.failed_logins + 1, last_failed_at=now))
        else:
            conn.execute(schema.users.update().where(schema.users.c.id == row.id).values(failed_logins=0))
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            conn.execute(schema.sessions.delete().where(schema.sessions.c.expires_at < now))
            conn.execute(schema.sessions.insert().values(
                token_hash=_hash_token(token), user_id=row.id, csrf_token=csrf, expires_at=now + SESSION_SECONDS))
    if not ok:
        raise Unauthorized("unknown user or wrong password")
    return User(row.id, row.name, row.role), token, csrf


_SESSION_USER = (sa.select(schema.users.c.id, schema.users.c.name, schema.users.c.role, schema.sessions.c.csrf_token)
                 .join(schema.sessions, schema.sessions.c.user_id == schema.users.c.id)
                 .where(schema.sessions.c.token_hash == sa.bindparam("token"),
                        schema.sessions.c.expires_at > sa.bindparam("now")))


def session_user(conn: Connection, token: str) -> tuple[User, str] | None:
    """The user and CSRF token of a live session, or None."""
    row = conn.execute(_SESSION_USER, {"token": _hash_token(token), "now": time.time()}).first()
    return (User(row.id, row.name, row.role), row.csrf_token) if row else None


def logout(conn: Connection, token: str) -> None:
    conn.execute(schema.sessions.delete().where(schema.sessions.c.token_hash == _hash_token(token)))


# --------------------------------------------------------------------------------------------- projects


def _project(row: Any) -> Project:
    return Project(row.id, row.name, row.task_type, row.guidelines, list(row.labels or []), row.overlap,
                   bool(row.self_review))


def create_project(conn: Connection, name: str, task_type: str, guidelines: str = "",
                   labels: list[str] | None = None, overlap: int = 1, self_review: bool = False) -> Project:
    check_name(name, "name")
    labels = [label.strip() for label in (labels or []) if label.strip()]
    tasks.check_project_settings(task_type, labels, overlap)
    if conn.execute(sa.select(schema.projects.c.id).where(schema.projects.c.name == name)).first():
        raise Conflict(f"project {name!r} already exists")
    result = conn.execute(schema.projects.insert().values(
        name=name, task_type=task_type, guidelines=guidelines, labels=labels, overlap=overlap,
        self_review=self_review, created_at=time.time()))
    return Project(result.inserted_primary_key[0], name, task_type, guidelines, labels, overlap, self_review)


def update_project(conn: Connection, project: Project, guidelines: str | None = None,
                   overlap: int | None = None, self_review: bool | None = None) -> Project:
    values: dict[str, Any] = {}
    if guidelines is not None:
        values["guidelines"] = guidelines
    if self_review is not None:
        values["self_review"] = self_review
    if overlap is not None:
        tasks.check_project_settings(project.task_type, project.labels, overlap)
        values["overlap"] = overlap
    if values:
        conn.execute(schema.projects.update().where(schema.projects.c.id == project.id).values(**values))
    if overlap is not None:
        # Records that now have enough annotations are done; ones that need more are open again.
        r = schema.records
        conn.execute(r.update().where(r.c.project_id == project.id).values(
            status=sa.case((r.c.submitted >= overlap, "done"), else_="open")).where(r.c.status != "draft"))
    return find_project(conn, project.name)


def find_project(conn: Connection, name: str) -> Project:
    row = conn.execute(sa.select(schema.projects).where(schema.projects.c.name == name)).first()
    if row is None:
        raise NotFound(f"no project {name!r}")
    return _project(row)


def is_member(conn: Connection, project: Project, user: User) -> bool:
    m = schema.members
    return conn.execute(sa.select(m.c.user_id).where(m.c.project_id == project.id, m.c.user_id == user.id)
                        ).first() is not None


_PROJECT_FOR = (sa.select(schema.projects, schema.members.c.user_id.label("member"))
                .outerjoin(schema.members, sa.and_(schema.members.c.project_id == schema.projects.c.id,
                                                   schema.members.c.user_id == sa.bindparam("user")))
                .where(schema.projects.c.name == sa.bindparam("name")))


def project_for(conn: Connection, name: str, user: User, *, review: bool = False) -> Project:
    """The project ``name`` as ``user`` may see it: admins see all, others only their projects.

    A non-member gets the same answer as for a project that does not exist, so names do not leak.
    ``review=True`` also requires the reviewer or admin role.
    """
    row = conn.execute(_PROJECT_FOR, {"name": name, "user": user.id}).first()
    if row is None or (row.member is None and not user.is_admin):
        raise NotFound(f"no project {name!r} (or you are not a member of it)")
    if review and not user.can_review:
        raise Forbidden(f"reviewing, statistics and export of {name!r} need the reviewer or admin role")
    return _project(row)


def projects_for(conn: Connection, user: User | None) -> list[Project]:
    """The projects ``user`` may see; ``None`` (the CLI, which works on the database itself) lists all."""
    query = sa.select(schema.projects).order_by(schema.projects.c.name)
    if user is not None and not user.is_admin:
        query = query.join(schema.members, schema.members.c.project_id == schema.projects.c.id).where(
            schema.members.c.user_id == user.id)
    return [_project(row) for row in conn.execute(query)]


def add_member(conn: Connection, project: Project, user: User) -> bool:
    """Add ``user`` to ``project``; False when already a member."""
    if is_member(conn, project, user):
        return False
    conn.execute(schema.members.insert().values(project_id=project.id, user_id=user.id))
    return True


def member_names(conn: Connection, project: Project) -> list[str]:
    rows = conn.execute(sa.select(schema.users.c.name).join(
        schema.members, schema.members.c.user_id == schema.users.c.id).where(
        schema.members.c.project_id == project.id).order_by(schema.users.c.name))
    return [r.name for r in rows]


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("this needs the admin role")
