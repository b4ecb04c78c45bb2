"""Engines for SQLite (the default, in WAL mode) and PostgreSQL, and applying the migrations.

The migrations themselves live in :mod:`annotune.annotate.migrations`. Each runs in its own transaction, so
a failed one leaves the database at the previous step.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from annotune.annotate import schema
from annotune.annotate.migrations import MIGRATIONS
from annotune.errors import AnnotuneError
from annotune.paths import annotune_home

DB_ENV = "ANNOTUNE_DB"
READONLY = "annotune_readonly"  # execution option: this transaction only reads


class DatabaseError(AnnotuneError):
    """The database cannot be opened or is not a workbench database."""


def default_url() -> str:
    """``$ANNOTUNE_DB``, else a SQLite file in the annotune home folder."""
    return os.environ.get(DB_ENV) or f"sqlite:///{annotune_home() / 'workbench.db'}"


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every committed
        # transaction through a crash of the process (a power cut may lose the last few).
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the write lock at BEGIN: a transaction that reads then writes (leasing a task) can then
        # never be invalidated half-way, and concurrent writers queue on busy_timeout instead of failing.
        # Read-only transactions read a snapshot (WAL) and never wait for writers.
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseError(f"cannot parse database URL {url!r}: {exc}; use sqlite:///PATH or "
                            "postgresql://USER:PASSWORD@HOST/DB") from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseError(f"{url!r} is an in-memory database, gone when the command ends; give a file: "
                                "sqlite:///PATH (an absolute path has four slashes: sqlite:////srv/workbench.db)")
        engine = sa.create_engine(parsed, pool_size=20, max_overflow=30, pool_timeout=60)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_size=20, max_overflow=30, pool_pre_ping=True, pool_timeout=60)
    raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r} in {url!r}; use sqlite or postgresql")


# ------------------------------------------------------------------------------------------ migrations


def migrate(engine: Engine, until: str | None = None) -> list[str]:
    """Apply the migrations not yet recorded (up to and including ``until``); returns the names applied now."""
    with engine.begin() as conn:
        schema.migrations.create(conn, checkfirst=True)
    applied_now = []
    for name, step in MIGRATIONS:
        with engine.begin() as conn:
            done = conn.execute(sa.select(schema.migrations.c.name).where(schema.migrations.c.name == name))
            if done.first() is None:
                step(conn)
                conn.execute(schema.migrations.insert().values(name=name, applied_at=time.time()))
                applied_now.append(name)
        if name == until:
            break
    return applied_now


class Database:
    """An engine plus the one way to use it: ``with db.transaction() as conn:``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # SQLite allows one writer at a time. Writers of this process queue on this lock, in order, instead
        # of in SQLite's busy handler, which polls with sleeps of up to 100 ms and lets late comers overtake.
        self._sqlite_writer = threading.Lock() if self.is_sqlite else None

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Connection]:
        """One transaction; ``readonly=True`` for requests that only read (on SQLite they skip the write lock)."""
        writer_lock = self._sqlite_writer if not readonly else None
        if writer_lock is not None:
            writer_lock.acquire()
        try:
            with self.engine.connect() as conn:
                if readonly:
                    conn.execution_options(**{READONLY: True})
                with conn.begin():
                    yield conn
        finally:
            if writer_lock is not None:
                writer_lock.release()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_file(db: Database) -> Path | None:
    return Path(db.engine.url.database).expanduser() if db.is_sqlite else None


def open_database(url: str | None = None, *, create: bool = True) -> Database:
    """Open (and migrate) the workbench database at ``url`` (default: :func:`default_url`).

    ``create=False`` opens only an existing workbench database: a mistyped SQLite path is an error, not a new
    empty database.
    """
    db = Database(url or default_url())
    file = _sqlite_file(db)
    if file is not None and file.is_dir():
        raise DatabaseError(f"{file} is a folder; name the database file inside it (sqlite:///{file}/workbench.db)")
    if file is not None and not create and not file.exists():
        raise DatabaseError(f"no workbench database at {file}; check --db or ${DB_ENV}, or create one with "
                            "`annotune workbench user add` or `annotune workbench serve`")
    if file is not None and create:
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            # It will hold password and token hashes: readable by its owner only (SQLite gives its -wal and
            # -shm files the same mode).
            os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        if create:
            migrate(db.engine)
        else:
            with db.transaction() as conn:
                if not sa.inspect(conn).has_table(schema.migrations.name):
                    raise DatabaseError(f"{db.display_url} is not a workbench database; run "
                                        "`annotune workbench serve` or `annotune workbench user add` first")
    except sa.exc.DBAPIError as exc:  # cannot connect, not a database file, no permission ...
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        hint = ("check the path: it must be a workbench database (SQLite) file" if db.is_sqlite else
                "check the URL, that the server is running and that the user may connect")
        raise DatabaseError(f"cannot open database {db.display_url}: {reason}; {hint}") from None
    return db
