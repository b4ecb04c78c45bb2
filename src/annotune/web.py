"""What every annotune web app shares (the workbench and the model server alike): the headers sent with each
response, and the check that the address to listen on is free."""

from __future__ import annotations

import errno
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotune.errors import AnnotuneError

SECURITY_HEADERS = {
    # Scripts and styles come only from /static: injected markup could not run even if escaping failed.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def with_security_headers(response):
    """``response`` with :data:`SECURITY_HEADERS` set. For the 500 answer, which Starlette sends from its outermost
    layer, outside every middleware, :class:`SecurityHeaders` included."""
    response.headers.update(SECURITY_HEADERS)
    return response


class SecurityHeaders:
    """Add :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_port_free(host: str, port: int) -> None:
    """A clear error, before anything is loaded or announced, when ``host:port`` cannot be listened on (the web
    server would otherwise fail only after start-up, with its own message)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AnnotuneError(f"port {port} on {host} is already in use; pick another with --port") from None
            raise AnnotuneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host") from None
