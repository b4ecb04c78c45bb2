"""The workbench web application: authentication, CSRF, limits and error handling around the API and pages.

Two ways in: a login session (cookie, for the pages and the browser) whose state-changing requests must
carry the session's CSRF token, and an API token (``Authorization: Bearer ...``, for the CLI, scripts and
:mod:`annotune.annotate.client`), which needs no CSRF token because browsers never send it on their own.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotune.annotate import store
from annotune.annotate.db import Database, open_database
from annotune.annotate.errors import Forbidden, Invalid, Throttled, Unauthorized, WorkbenchError
from annotune.annotate.queue import LEASE_SECONDS
from annotune.errors import AnnotuneError
from annotune.web import SecurityHeaders, with_security_headers

SESSION_COOKIE = "annotune_session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_UPLOAD = 20 * 1024 * 1024  # bytes in one request body
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Settings:
    lease_seconds: float = LEASE_SECONDS
    max_upload: int = MAX_UPLOAD
    secure_cookies: bool = False  # set when served over HTTPS (behind a proxy)


class BodyLimit:
    """Refuse request bodies over ``max_upload`` bytes (413)."""

    def __init__(self, app: ASGIApp, max_upload: int) -> None:
        self.app, self.max_upload = app, max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_upload:
            await _too_large(self.max_upload)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_upload:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(self.max_upload)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> Response:
    return JSONResponse({"error": f"request body over the {limit // (1024 * 1024)} MiB upload limit; split the "
                                  "file and import it in parts"}, status_code=413)


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

    Entries live ``ttl`` seconds. Logging out here drops the session at once; a session or token removed by
    another process (``user password`` logs a user out) stops working within ``ttl``.
    """

    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
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


async def authenticate(request: Request) -> Auth:
    """The caller, or 401; a session's unsafe request must also carry the CSRF token (else 403)."""
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    if header and bearer is None:
        raise Unauthorized("use 'Authorization: Bearer TOKEN' (create one with `annotune workbench token NAME`)")
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


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _install_error_handlers(app: FastAPI) -> None:
    from annotune.annotate.pages import render_error

    @app.exception_handler(WorkbenchError)
    async def _workbench_error(request: Request, exc: WorkbenchError) -> Response:
        headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        if _wants_html(request):
            if isinstance(exc, Unauthorized):
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return render_error(request, str(exc), exc.status)
        body: dict[str, Any] = {"error": str(exc)}
        if getattr(exc, "field", None):
            body["field"] = exc.field  # type: ignore[attr-defined]
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        """FastAPI's own checks (a missing field, a wrong type) in the workbench's one error shape."""
        first = exc.errors()[0]
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(where) or "request"
        message = "this field is required" if first.get("type") == "missing" else str(first.get("msg", "invalid"))
        return await _workbench_error(request, Invalid(field, message))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logging.getLogger("annotune.workbench").error("%s %s failed", request.method, request.url.path,
                                                      exc_info=exc)
        message = "internal error; the server's log has the details"
        response = (render_error(request, message, 500) if _wants_html(request)
                    else JSONResponse({"error": message}, status_code=500))
        return with_security_headers(response)

    @app.exception_handler(OverflowError)  # SQLite: an integer beyond 64 bits
    @app.exception_handler(sa_exc.DataError)  # PostgreSQL: a value out of its column's range
    async def _out_of_range(request: Request, exc: Exception) -> Response:
        message = "a number in the request is out of range (ids, versions and offsets are 64-bit integers)"
        if _wants_html(request):
            return render_error(request, message, 422)
        return JSONResponse({"error": message}, status_code=422)

    @app.exception_handler(AnnotuneError)
    async def _data_error(request: Request, exc: AnnotuneError) -> Response:
        if _wants_html(request):
            return render_error(request, str(exc), 422)
        return JSONResponse({"error": str(exc)}, status_code=422)


SETTINGS_ENV = "ANNOTUNE_WORKBENCH_SETTINGS"  # JSON of Settings, for worker processes


def app_from_environment() -> FastAPI:
    """The application as ``serve --workers N`` starts it in each worker: database and settings from the
    environment the parent process set."""
    return create_app(None, Settings(**json.loads(os.environ.get(SETTINGS_ENV, "{}"))))


def create_app(db_url: str | None = None, settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """The application over the database at ``db_url`` (migrated on start)."""
    from annotune.annotate import api, pages

    # No Swagger page: it loads its scripts from a CDN, which the CSP (and an offline server) rules out; the
    # OpenAPI description itself is served.
    app = FastAPI(title="annotune workbench", docs_url=None, openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.db = db or open_database(db_url)
    app.state.settings = settings or Settings()
    app.state.auth_cache = AuthCache()
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_upload=app.state.settings.max_upload)
    app.add_middleware(SecurityHeaders)  # outermost: a refused body's 413 carries the headers too
    return app
