"""Backups: every table to one JSONL file, from a consistent snapshot, restorable into SQLite or PostgreSQL.

The file starts with a header line ``{"annotune_backup": 1, "migrations": [...], ...}`` followed by one
``{"table": NAME, "row": {...}}`` line per row, parents before children. Login sessions are not kept.
Restoring needs an empty database, so a backup can also move a workbench from SQLite to PostgreSQL.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from annotune.annotate import schema
from annotune.annotate.db import Database
from annotune.errors import DataError

TABLES = [schema.users, schema.api_tokens, schema.projects, schema.members, schema.records, schema.assignments,
          schema.annotations]
FORMAT_VERSION = 1


def backup(db: Database, out: str | Path) -> dict[str, int]:
    """Write the backup to ``out`` (atomically); returns rows per table."""
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out} is a folder; give the backup file's path, e.g. {out / 'workbench-backup.jsonl'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh, db.transaction(readonly=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            applied = [row.name for row in conn.execute(sa.select(schema.migrations.c.name))]
            header = {"annotune_backup": FORMAT_VERSION, "migrations": applied, "created_at": time.time()}
            fh.write(json.dumps(header) + "\n")
            for table in TABLES:
                counts[table.name] = 0
                for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns)):
                    fh.write(json.dumps({"table": table.name, "row": dict(row._mapping)}, ensure_ascii=False) + "\n")
                    counts[table.name] += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts


def _row(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    try:
        item = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{number}: not UTF-8 text (byte {exc.start}); the file is damaged") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{number}: not valid JSON ({exc.msg}); the file is damaged") from None
    if not isinstance(item, dict):
        raise DataError(f"{path}:{number}: not a backup line (a JSON object); the file is damaged")
    return item


def open_backup(path: str | Path) -> tuple[BinaryIO, dict[str, Any]]:
    """The backup file, open after its header line, and the header; a clear error when it is not a backup."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give the backup file inside it")
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        first = fh.readline()
        header = _row(path, 1, first) if first.strip() else {}
        if header.get("annotune_backup") != FORMAT_VERSION:
            raise DataError(f"{path}:1: not an annotune workbench backup (no 'annotune_backup' header)")
    except BaseException:
        fh.close()
        raise
    return fh, header


def _insert(conn: Any, table: sa.Table, row: dict[str, Any], where: str) -> None:
    """One backed-up row into its table; a row the table cannot take is a clear error naming the line."""
    unknown = sorted(set(row) - set(table.c.keys()))
    if unknown:
        raise DataError(f"{where}: {table.name} has no column {', '.join(map(repr, unknown))}; the file is damaged "
                        "or comes from a newer annotune (nothing was restored)")
    try:
        conn.execute(table.insert().values(**row))
    except (sa.exc.SQLAlchemyError, TypeError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DataError(f"{where}: this {table.name} row cannot be restored ({reason}); the file is damaged "
                        "(nothing was restored)") from None


def restore(db: Database, path: str | Path) -> dict[str, int]:
    """Load a backup into an empty workbench database, in one transaction (nothing is kept if a line is bad)."""
    path = Path(path)
    fh, _header = open_backup(path)
    by_name = {table.name: table for table in TABLES}
    counts = {name: 0 for name in by_name}
    with fh, db.transaction() as conn:
        for table in (schema.users, schema.projects):
            if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                raise DataError(f"{db.display_url} already holds {table.name}; restore into an empty database")
        for number, raw in enumerate(fh, start=2):
            if not raw.strip():
                continue
            item = _row(path, number, raw)
            table = by_name.get(item.get("table"))
            if table is None or not isinstance(item.get("row"), dict):
                raise DataError(f"{path}:{number}: not a backup row; the file is damaged")
            _insert(conn, table, item["row"], f"{path}:{number}")
            counts[table.name] += 1
        if conn.dialect.name == "postgresql":
            for table in TABLES:
                if "id" in table.c:
                    conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                         f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)")
    return counts
