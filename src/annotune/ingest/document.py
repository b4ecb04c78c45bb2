"""The unit that flows through ingest: one document with where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class ReadError(Exception):
    """A file that cannot be read; the message is the reason shown in the report. The run goes on."""


@dataclass
class Document:
    """Text plus provenance. ``position`` locates it inside its file (page, row, line); ``meta`` holds the rest."""

    text: str
    path: str
    title: str | None = None
    url: str | None = None
    position: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Document:
        return cls(**{k: row[k] for k in ("text", "path", "title", "url", "position", "meta") if k in row})


class FileNotes:
    """Problems inside a file that did not stop it being read (a bad JSONL line, a page without text)."""

    def __init__(self, keep: int = 10) -> None:
        self.keep = keep
        self.items: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.items) < self.keep:
            self.items.append(message)

    def as_list(self) -> list[str]:
        more = self.total - len(self.items)
        return self.items + ([f"... and {more} more"] if more else [])
