"""One problem found in a dataset file, located so the user can jump straight to it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """What is wrong at ``file:line:field`` and, after a semicolon, what to do about it."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        # The compiler-style shape lets editors and terminals turn it into a clickable location.
        return f"{self.file}:{self.line}:{self.field}: {self.message}"
