"""The ordered list of named migrations of the workbench database.

Each migration is frozen: it spells out the columns it creates or adds, as they were when it was written,
and never reads the live tables in :mod:`annotune.annotate.schema`. Applying them all, in order, leaves
exactly the tables ``schema`` describes (a test checks this column by column, from every earlier state).
Applied names are recorded in ``annotune_migrations``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def _m001_initial(conn: Connection) -> None:
    meta = sa.MetaData()
    fk = sa.ForeignKey
    sa.Table(
        "users", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_failed_at", sa.Float),
    )
    sa.Table(
        "api_tokens", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, fk("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(100), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "sessions", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, fk("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    sa.Table(
        "projects", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("task_type", sa.String(20), nullable=False),
        sa.Column("guidelines", sa.Text, nullable=False, server_default=""),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("overlap", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "members", meta,
        sa.Column("project_id", sa.Integer, fk("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, fk("users.id", ondelete="CASCADE"), primary_key=True),
    )
    sa.Table(
        "records", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, fk("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ext_id", sa.String(200)),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("source", sa.JSON),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("submitted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("project_id", "ext_id", name="uq_records_ext_id"),
        sa.Index("ix_records_queue", "project_id", "status", "id"),
    )
    sa.Table(
        "assignments", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_id", sa.Integer, fk("records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.Integer, fk("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, fk("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("swap", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("record_id", "user_id", name="uq_assignments_record_user"),
        sa.Index("ix_assignments_user", "project_id", "user_id", "status"),
        sa.Index("ix_assignments_record", "record_id", "status"),
    )
    sa.Table(
        "annotations", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("record_id", sa.Integer, fk("records.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.Integer, fk("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("assignment_id", sa.Integer, fk("assignments.id", ondelete="CASCADE"), unique=True),
        sa.Column("user_id", sa.Integer, fk("users.id"), nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.Integer, fk("users.id")),
        sa.Column("review_comment", sa.Text, nullable=False, server_default=""),
        sa.Index("ix_annotations_project", "project_id", "status"),
        sa.Index("ix_annotations_record", "record_id"),
    )
    meta.create_all(conn)


def add_column(conn: Connection, table: str, column: sa.Column) -> None:
    """``ALTER TABLE table ADD COLUMN column`` on either database (a column that has a default gets it)."""
    column_type = column.type.compile(dialect=conn.dialect)
    ddl = f"ALTER TABLE {table} ADD COLUMN {column.name} {column_type}"
    if column.server_default is not None:
        default = column.server_default.arg
        ddl += f" DEFAULT {default.text if hasattr(default, 'text') else repr(default)}"
    if not column.nullable:
        ddl += " NOT NULL"
    conn.execute(sa.text(ddl))


TOKEN_DAYS_002 = 90  # tokens made before 002 never expired; they get this long from the upgrade on


def _m002_accounts(conn: Connection) -> None:
    """Disabled users, token expiry, and the login throttle keyed by address and name."""
    add_column(conn, "users", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.text("false")))
    add_column(conn, "api_tokens", sa.Column("expires_at", sa.Float))
    conn.execute(sa.text("UPDATE api_tokens SET expires_at = :at"),
                 {"at": time.time() + TOKEN_DAYS_002 * 24 * 3600})
    meta = sa.MetaData()
    sa.Table(
        "login_throttle", meta,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_failed_at", sa.Float),
        sa.Column("last_ok_at", sa.Float),
    )
    meta.create_all(conn)


def _m003_reviews(conn: Connection) -> None:
    """Review leases, no self-review unless the project allows it, and whether a draft was changed."""
    add_column(conn, "annotations", sa.Column("suggestion_changed", sa.Boolean))
    add_column(conn, "annotations", sa.Column("review_lease_user", sa.Integer))
    add_column(conn, "annotations", sa.Column("review_lease_expires", sa.Float))
    add_column(conn, "projects", sa.Column("self_review", sa.Boolean, nullable=False, server_default="0"))


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_accounts", _m002_accounts),
    ("003_reviews", _m003_reviews),
]
