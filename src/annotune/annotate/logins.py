"""Logging in: the throttle on failed logins and the bound on concurrent password hashing.

Every attempt is counted as a failure *before* the password is checked, in the same transaction that checks
the throttle (rows locked on PostgreSQL, the write lock on SQLite), so parallel guesses cannot slip past the
limit; a right password then undoes the count. Three keys are counted, none of which depends on whether the
name exists, so a known and an unknown name get the same answers:

- the address and the name: 5 free failures, then each attempt waits twice as long (1 s ... 5 min). Only that
  address is slowed, so a guesser cannot lock the real user out from elsewhere;
- the address alone: 30 free failures over any names (one address trying many accounts), then the same;
- the name alone: 20 free failures from all addresses together (guessing from many addresses), then waits of
  at most 60 s, and never from an address that name logged in from in the last 30 days.

Failures are forgotten a day after the last one.

Hashing is memory-hard (argon2: 64 MiB each); :class:`HashGate` lets only a few run at once, with a short
queue, and refuses the rest with 503 and ``Retry-After`` before they cost anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from annotune.annotate import schema, store
from annotune.annotate.db import Database
from annotune.annotate.errors import Busy, Forbidden, Throttled, Unauthorized


@dataclass(frozen=True)
class Limit:
    free: int  # failures before attempts have to wait
    max_wait: int  # seconds


PAIR, ADDRESS, ACCOUNT = Limit(5, 300), Limit(30, 300), Limit(20, 60)
KNOWN_SECONDS = 30 * 24 * 3600  # an address a name logged in from is "known" this long
FORGET_SECONDS = 24 * 3600  # failures older than this are forgotten at the next one
_lt = schema.login_throttle


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _keys(name: str, address: str) -> dict[str, tuple[str, Limit]]:
    return {"pair": (_key("pair", address, name), PAIR), "address": (_key("address", address), ADDRESS),
            "account": (_key("account", name), ACCOUNT)}


def _wait(failures: int, last_failed_at: float | None, limit: Limit, now: float) -> int:
    """Seconds until the next attempt may be made, after ``failures`` counted failures."""
    if failures < limit.free or last_failed_at is None:
        return 0
    wait = min(2 ** (failures - limit.free), limit.max_wait)
    return max(0, int(last_failed_at + wait - now + 0.999))


def _locked_rows(conn: Connection, keys: list[str]) -> dict[str, Any]:
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(_lt)
    conn.execute(insert.on_conflict_do_nothing(index_elements=[_lt.c.key]), [{"key": k} for k in keys])
    query = sa.select(_lt).where(_lt.c.key.in_(keys)).order_by(_lt.c.key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # SQLite: the write lock taken at BEGIN IMMEDIATE
    return {row.key: row for row in conn.execute(query)}


def begin_attempt(db: Database, name: str, address: str) -> tuple[Any, dict[str, tuple[str, Limit]]]:
    """Check the throttle and count this attempt as a failure, atomically; the user's row (None if unknown)."""
    now, keys = time.time(), _keys(name, address)
    with db.transaction() as conn:
        rows = _locked_rows(conn, [key for key, _ in keys.values()])
        pair = rows[keys["pair"][0]]
        known = pair.last_ok_at is not None and now - pair.last_ok_at < KNOWN_SECONDS
        wait = max(_wait(rows[key].failures, rows[key].last_failed_at, limit, now)
                   for kind, (key, limit) in keys.items() if not (kind == "account" and known))
        if wait:
            raise Throttled(f"too many failed logins; try again in {wait} s (check the name and password, or "
                            "ask an admin to set a new password)", wait)
        counted = sa.case((_lt.c.last_failed_at < now - FORGET_SECONDS, 1), else_=_lt.c.failures + 1)
        conn.execute(_lt.update().where(_lt.c.key.in_([key for key, _ in keys.values()]))
                     .values(failures=counted, last_failed_at=now))
        user = conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()
    return user, keys


def finish_attempt(db: Database, user: Any, ok: bool, keys: dict[str, tuple[str, Limit]]) -> tuple[str, str]:
    """After a right password: undo the attempt's count, remember the address, start a session."""
    if not ok:
        raise Unauthorized("unknown user or wrong password")
    if user.disabled:
        raise Forbidden(f"the account {user.name!r} is disabled; ask an admin to enable it")
    with db.transaction() as conn:
        conn.execute(_lt.update().where(_lt.c.key == keys["pair"][0]).values(failures=0, last_ok_at=time.time()))
        # Only this attempt's own count is undone: one right password must not wipe what was guessed wrong
        # from this address for other names, nor from other addresses for this name.
        conn.execute(_lt.update().where(_lt.c.key.in_([keys["address"][0], keys["account"][0]]), _lt.c.failures > 0)
                     .values(failures=_lt.c.failures - 1))
        return store.start_session(conn, store.User(user.id, user.name, user.role))


class HashGate:
    """At most ``slots`` password checks at once and ``queue`` more logins in progress; others get 503 at once.

    Waiting happens in the event loop, not in worker threads, so a flood of logins never takes the threads
    that authenticated requests need, and memory stays at ``slots`` hashes.
    """

    def __init__(self, slots: int | None = None, queue: int | None = None, retry_after: int = 2) -> None:
        self.slots = slots or max(1, min(4, os.cpu_count() or 1))
        self.queue = self.slots * 4 if queue is None else queue
        self.retry_after = retry_after
        self.inside = 0  # logins between admission and their answer (one event loop: no lock needed)
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        if self.inside >= self.slots + self.queue:
            raise Busy(f"too many logins at once; try again in {self.retry_after} s", self.retry_after)
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1

    async def check_password(self, password_hash: str | None, password: str) -> bool:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.slots)
        return await anyio.to_thread.run_sync(store.check_password, password_hash, password,
                                              limiter=self._limiter)


async def log_in(db: Database, gate: HashGate, name: str, password: str,
                 address: str) -> tuple[store.User, str, str]:
    """Check the name and password; returns (user, session token, CSRF token)."""
    async with gate.admitted():  # refused before anything is counted: it costs the user nothing
        user, keys = await run_in_threadpool(begin_attempt, db, name, address)
        ok = await gate.check_password(user.password_hash if user is not None else None, password)
        token, csrf = await run_in_threadpool(finish_attempt, db, user, ok, keys)
    return store.User(user.id, user.name, user.role), token, csrf
