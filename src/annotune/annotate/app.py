"""The workbench web application: the one place that composes the API and page routers with the body
limit, security headers and error handling. Who is calling is :mod:`annotune.annotate.auth`'s business.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotune.annotate import admin_api, admin_pages, api, pages, settings_pages
from annotune.annotate.auth import AuthCache
from annotune.annotate.db import Database, open_database
from annotune.annotate.errors import Invalid, Unauthorized, WorkbenchError
from annotune.annotate.logins import HashGate
from annotune.annotate.pages import render_error
from annotune.annotate.queue import LEASE_SECONDS
from annotune.errors import AnnotuneError
from annotune.web import SecurityHeaders, with_security_headers

MAX_UPLOAD = 20 * 1024 * 1024  # bytes in one request body
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Settings:
    lease_seconds: float = LEASE_SECONDS
    max_upload: int = MAX_UPLOAD
    secure_cookies: bool = False  # set when served over HTTPS (behind a proxy)


class BodyLimit:
    """Refuse request bodies over ``max_upload`` bytes (413), declared or not (chunked).

    A chunked body is counted as it is read. Whatever the route then makes of the interrupted read (FastAPI
    answers a JSON body it could not read with 400), the client gets the 413.
    """

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
        received, exceeded, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_upload:
                exceeded = True
                raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the route's own answer to the interrupted read; the 413 below replaces it
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:  # _BodyTooLarge, or whatever the route made of it
                raise
        if exceeded and not started:
            await _too_large(self.max_upload)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> Response:
    return JSONResponse({"error": f"request body over the {limit // (1024 * 1024)} MiB upload limit; split the "
                                  "file and import it in parts"}, status_code=413)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WorkbenchError)
    async def _workbench_error(request: Request, exc: WorkbenchError) -> Response:
        retry_after = getattr(exc, "retry_after", None)  # Throttled, Busy
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
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
    # No Swagger page: it loads its scripts from a CDN, which the CSP (and an offline server) rules out; the
    # OpenAPI description itself is served.
    app = FastAPI(title="annotune workbench", docs_url=None, openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.db = db or open_database(db_url)
    app.state.settings = settings or Settings()
    app.state.auth_cache = AuthCache()
    app.state.hash_gate = HashGate()
    app.include_router(api.router)
    app.include_router(admin_api.router)
    app.include_router(pages.router)
    app.include_router(admin_pages.router)
    app.include_router(settings_pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_upload=app.state.settings.max_upload)
    app.add_middleware(SecurityHeaders)  # outermost: a refused body's 413 carries the headers too
    return app
