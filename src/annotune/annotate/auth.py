"""Who is calling, for the API routes and the pages alike (:func:`authenticate`).

Two ways in: a login session (cookie, for the pages and the browser) whose state-changing requests must
carry the session's CSRF token, and an API token (``Authorization: Bearer ...``, for the CLI, scripts and
:mod:`annotune.annotate.client`), which needs no CSRF token because browsers never send it on their own.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from annotune.annotate import store
from annotune.annotate.db import Database
from annotune.annotate.errors import Forbidden, Unauthorized
from annotune.annotate.store import SESSION_SECONDS

SESSION_COOKIE = "annotune_session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Auth:
    user: store.User
    csrf_token: str | None  # None for API-token requests
    session_token: str | None = None


def _lookup(db: Database, bearer: str | None, session: str | None) -> Auth | None:
    with db.transaction(readonly=True) as conn:
        if bearer:
            user = store.user_for_token(conn, bearer)
            return Auth(user, None) if user else None
        if session:
            found = store.session_user(conn, session)
            return Auth(found[0], found[1], session) if found else None
    return None


class AuthCache:
    """Recent successful logins-by-token, so most requests skip the lookup (a transaction and a thread hop).

    Entries live ``ttl`` seconds. Logging out, disabling, deleting a user or changing their role or tokens
    through this process drops their entries at once; a change made by another process (the CLI, another
    server worker) takes effect within ``ttl``.
    """

    def __init__(self, ttl: float = store.AUTH_CACHE_SECONDS, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._items: dict[tuple[str, str], tuple[float, Auth]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Auth | None:
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] < time.monotonic():
                self._items.pop(key, None)
                return None
            return found[1]

    def put(self, key: tuple[str, str], auth: Auth) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, auth)

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._items.pop(key, None)

    def drop_user(self, user_id: int) -> None:
        """Forget every session and token of one user."""
        with self._lock:
            for key in [k for k, (_, auth) in self._items.items() if auth.user.id == user_id]:
                del self._items[key]


async def authenticate(request: Request) -> Auth:
    """The caller, or 401; a session's unsafe request must also carry the CSRF token (else 403)."""
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    if header and bearer is None:
        raise Unauthorized("use 'Authorization: Bearer TOKEN' (create one with `annotune workbench token create NAME`)")
    session = request.cookies.get(SESSION_COOKIE)
    key = ("bearer", bearer) if bearer else ("session", session or "")
    cache: AuthCache = request.app.state.auth_cache
    auth = cache.get(key)
    if auth is None:
        auth = await run_in_threadpool(_lookup, request.app.state.db, bearer, session)
        if auth is None:
            raise Unauthorized("log in first, or send a valid API token")
        cache.put(key, auth)
    if auth.csrf_token is not None and request.method not in SAFE_METHODS:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = (await request.form()).get("csrf_token")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, auth.csrf_token):
            raise Forbidden("missing or wrong CSRF token; reload the page and try again")
    return auth


CurrentAuth = Annotated[Auth, Depends(authenticate)]


def log_out(request: Request, auth: Auth, everywhere: bool = False) -> int:
    """End the caller's session (or all their sessions); returns how many ended."""
    if not auth.session_token and not everywhere:
        return 0
    with request.app.state.db.transaction() as conn:
        if everywhere:
            ended = store.logout_everywhere(conn, auth.user)
        else:
            store.logout(conn, auth.session_token)
            ended = 1
    cache: AuthCache = request.app.state.auth_cache
    cache.drop(("session", auth.session_token or ""))
    if everywhere:
        cache.drop_user(auth.user.id)  # its tokens too: they are looked up again, and still work
    return ended


def client_address(request: Request) -> str:
    """The caller's address, for the login throttle (behind a proxy: the one uvicorn trusts it to forward)."""
    return request.client.host if request.client else "unknown"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                        secure=request.app.state.settings.secure_cookies, path="/")
