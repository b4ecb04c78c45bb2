"""The workbench tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Times are seconds since the epoch (floats), JSON columns hold task payloads and annotation values; both
work the same on either database.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ROLES = ("admin", "reviewer", "annotator")

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Consecutive failed logins and when the last one happened: each new failure waits longer.
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_failed_at", sa.Float),  # both unused since 002: logins are throttled in login_throttle
    # A disabled user cannot log in, and their sessions and tokens stop working (002).
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex; the token is shown once
    sa.Column("label", sa.String(100), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),  # NULL: never (only when asked for explicitly) (002)
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

projects = sa.Table(
    "projects", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("task_type", sa.String(20), nullable=False),
    sa.Column("guidelines", sa.Text, nullable=False, server_default=""),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("overlap", sa.Integer, nullable=False),  # annotations each record needs
    sa.Column("self_review", sa.Boolean, nullable=False, server_default="0"),  # may reviewers review their own?
    sa.Column("created_at", sa.Float, nullable=False),
)

members = sa.Table(
    "members", metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

records = sa.Table(
    "records", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ext_id", sa.String(200)),  # the id the import gave it (a chunk id ...): re-imports skip it
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("source", sa.JSON),
    sa.Column("status", sa.String(10), nullable=False),  # open | done
    sa.Column("submitted", sa.Integer, nullable=False, server_default="0"),  # live (not rejected) annotations
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("project_id", "ext_id", name="uq_records_ext_id"),
    sa.Index("ix_records_queue", "project_id", "status", "id"),
)

assignments = sa.Table(
    "assignments", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("record_id", sa.Integer, sa.ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # leased | submitted | skipped
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("swap", sa.Boolean, nullable=False, server_default=sa.false()),  # compare: show answers reversed
    # One row per (record, user): a user never gets the same record twice.
    sa.UniqueConstraint("record_id", "user_id", name="uq_assignments_record_user"),
    sa.Index("ix_assignments_user", "project_id", "user_id", "status"),
    sa.Index("ix_assignments_record", "record_id", "status"),
)

annotations = sa.Table(
    "annotations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("record_id", sa.Integer, sa.ForeignKey("records.id", ondelete="CASCADE"), nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id", ondelete="CASCADE"), unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending | accepted | rejected
    sa.Column("version", sa.Integer, nullable=False),  # +1 on every change; edits name the version they saw
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.Integer, sa.ForeignKey("users.id")),
    sa.Column("review_comment", sa.Text, nullable=False, server_default=""),
    # Whether the annotator changed the draft (a model suggestion, a correct task's answer) before submitting;
    # NULL when there was no draft. Export can leave out drafts submitted unchanged.
    sa.Column("suggestion_changed", sa.Boolean),
    # The review queue's lease: who is reviewing the annotation, until when (like assignments for annotation).
    sa.Column("review_lease_user", sa.Integer),
    sa.Column("review_lease_expires", sa.Float),
    sa.Index("ix_annotations_project", "project_id", "status"),
    sa.Index("ix_annotations_record", "record_id"),
)

# Failed logins per throttle key (a hash of "address", "address + name" or "name"), counted before the password
# is checked so that parallel guesses cannot pass the limit (002).
login_throttle = sa.Table(
    "login_throttle", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_failed_at", sa.Float),
    sa.Column("last_ok_at", sa.Float),  # "address + name" keys: when that name last logged in from there
)

migrations = sa.Table(
    "annotune_migrations", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
