"""Migrations on SQLite and PostgreSQL: each is frozen, and upgrading from every earlier state gives exactly
the columns of the live schema, with the rows kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from annotune.annotate import db as dbm
from annotune.annotate import schema
from annotune.annotate.migrations import MIGRATIONS

# The columns 001 created when it was written. Later columns come from later migrations, never from 001.
COLUMNS_001 = {
    "users": ["id", "name", "role", "password_hash", "created_at", "failed_logins", "last_failed_at"],
    "api_tokens": ["id", "user_id", "token_hash", "label", "created_at"],
    "sessions": ["id", "token_hash", "user_id", "csrf_token", "expires_at"],
    "projects": ["id", "name", "task_type", "guidelines", "labels", "overlap", "created_at"],
    "members": ["project_id", "user_id"],
    "records": ["id", "project_id", "ext_id", "payload", "source", "status", "submitted", "created_at"],
    "assignments": ["id", "record_id", "project_id", "user_id", "status", "expires_at", "swap"],
    "annotations": ["id", "record_id", "project_id", "assignment_id", "user_id", "value", "status", "version",
                    "created_at", "updated_at", "updated_by", "review_comment"],
}


def columns(engine) -> dict[str, dict[str, bool]]:
    """Every table's columns as name -> nullable, as the database reports them."""
    inspector = sa.inspect(engine)
    return {table: {c["name"]: bool(c["nullable"]) for c in inspector.get_columns(table)}
            for table in inspector.get_table_names() if table != schema.migrations.name}


def test_001_creates_its_frozen_columns_only(db_url):
    engine = dbm.make_engine(db_url)
    assert dbm.migrate(engine, until="001_initial") == ["001_initial"]
    assert {table: list(cols) for table, cols in columns(engine).items()} == COLUMNS_001
    engine.dispose()


@pytest.mark.parametrize("start", [name for name, _ in MIGRATIONS])
def test_upgrading_from_every_earlier_state_gives_the_live_schema(db_url, start):
    engine = dbm.make_engine(db_url)
    dbm.migrate(engine, until=start)
    with engine.begin() as conn:  # a row written by the old version survives the upgrade
        conn.execute(sa.text("INSERT INTO users (name, role, password_hash, created_at) "
                             "VALUES ('old', 'admin', 'x', 1.0)"))
    later = [name for name, _ in MIGRATIONS][[name for name, _ in MIGRATIONS].index(start) + 1:]
    assert dbm.migrate(engine) == later
    expected = {table.name: {c.name: bool(c.nullable) for c in table.columns}
                for table in schema.metadata.sorted_tables if table.name != schema.migrations.name}
    assert columns(engine) == expected
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT name FROM users")).scalars().all() == ["old"]
    engine.dispose()


def test_002_gives_tokens_made_before_it_an_expiry_and_keeps_users_enabled(db_url):
    import time

    engine = dbm.make_engine(db_url)
    dbm.migrate(engine, until="001_initial")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (name, role, password_hash, created_at) VALUES ('old', 'admin', 'x', 1)"))
        conn.execute(sa.text("INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES (1, 'h', 1)"))
    dbm.migrate(engine)
    with engine.begin() as conn:
        expires = conn.execute(sa.text("SELECT expires_at FROM api_tokens")).scalar_one()
        assert conn.execute(sa.text("SELECT disabled FROM users")).scalar_one() in (False, 0)
    assert time.time() + 89 * 24 * 3600 < expires < time.time() + 91 * 24 * 3600
    engine.dispose()
