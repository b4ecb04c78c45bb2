"""Workbench errors: each carries the HTTP status the API answers with; the CLI prints the message."""

from __future__ import annotations

from annotune.errors import AnnotuneError


class WorkbenchError(AnnotuneError):
    status = 400


class Unauthorized(WorkbenchError):
    status = 401


class Forbidden(WorkbenchError):
    status = 403


class NotFound(WorkbenchError):
    status = 404


class Conflict(WorkbenchError):
    """A stale version, a lease someone else now holds, a duplicate name: reload and try again."""

    status = 409


class TooLarge(WorkbenchError):
    status = 413


class Invalid(WorkbenchError):
    """An annotation or request field that fails its checks; ``field`` names it."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Throttled(WorkbenchError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(WorkbenchError):
    """Too many requests of a costly kind at once (logins): try again after ``retry_after`` seconds."""

    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MethodNotAllowed(WorkbenchError):
    status = 405
