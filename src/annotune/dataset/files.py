"""Raw file access: text in, records with their line numbers out, and atomic writes.

Nothing here knows about dataset formats; it only turns bytes into ``(line, value)`` pairs and reports
syntax problems (bad UTF-8, bad JSON, ragged CSV rows) as :class:`Problem` without stopping early.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from annotune.dataset.problem import Problem
from annotune.errors import DataError

# A record that parsed: the 1-based line where it starts, and the decoded JSON value (or CSV row dict).
Record = tuple[int, Any]


def read_text(path: Path) -> tuple[str | None, list[Problem]]:
    """The file's text, or ``None`` plus a problem when it is not UTF-8. Missing files are a user error."""
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a dataset file; pass the file inside it")
    data = path.read_bytes()
    try:
        # utf-8-sig drops the byte-order mark that Excel and some Windows editors put first.
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        message = f"not valid UTF-8 (byte {err.start}: {err.reason}); re-save the file as UTF-8"
        return None, [Problem(str(path), line, "file", message)]


def read_user_file(path: str | Path, what: str, hint: str = "") -> str:
    """A file of text the user names in an option (a config, a template, guidelines), whole; a missing file, a
    folder or bytes that are not UTF-8 are one :class:`DataError` that names ``what`` the file is for, the path,
    and (``hint``) what else the user can do."""
    file = Path(path)
    also = f"; {hint}" if hint else ""
    if file.is_dir():
        raise DataError(f"{what}: {file}: is a folder, not a file; pass the file inside it")
    if not file.is_file():
        raise DataError(f"{what}: {file}: no such file; check the path{also}")
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what}: {file}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{what}: {file}: cannot read it ({exc.strerror}){also}") from None


def read_jsonl(path: Path) -> list[Any]:
    """Every record of a JSONL (or JSON array) file annotune wrote or ships; a damaged file is a
    :class:`DataError` naming its first problems as file:line."""
    text, problems = read_text(Path(path))
    records, more = json_records(str(path), text) if text is not None else ([], [])
    if problems or more:
        found = problems + more
        extra = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise DataError("; ".join(str(p) for p in found[:3]) + extra)
    return [value for _, value in records]


def json_records(file: str, text: str) -> tuple[list[Record], list[Problem]]:
    """Records of a JSON array file or a JSONL file, told apart by the first non-blank character."""
    if text.lstrip().startswith("["):
        return _array_records(file, text)
    return _jsonl_records(file, text)


def _jsonl_records(file: str, text: str) -> tuple[list[Record], list[Problem]]:
    records: list[Record] = []
    problems: list[Problem] = []
    # split("\n"), not splitlines(): U+2028 and friends may legally appear inside JSON strings.
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            records.append((line, json.loads(raw)))
        except RecursionError:
            problems.append(Problem(file, line, "json", "the JSON is nested too deeply to read; flatten this record"))
        except json.JSONDecodeError as err:
            message = (
                f"invalid JSON ({err.msg} at column {err.colno}); "
                "fix this line, each line must hold one complete JSON record"
            )
            problems.append(Problem(file, line, "json", message))
    if problems and not records and _is_single_object(text):
        # One pretty-printed object would otherwise produce an error on every line.
        message = (
            "the file holds a single JSON object spread over several lines; "
            "write one record per line (JSONL) or put the records in a JSON array"
        )
        return [], [Problem(file, problems[0].line, "json", message)]
    return records, problems


def _is_single_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


class _LineCounter:
    """Line number of a character offset, counting forward only so a whole file costs one pass."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def line_at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def skip_whitespace(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _array_records(file: str, text: str) -> tuple[list[Record], list[Problem]]:
    """Elements of a top-level JSON array, each with the line where it starts.

    Decoding element by element (instead of ``json.loads`` on the whole text) is what gives each record a
    real line number. A syntax error stops the read, since nothing after it can be located reliably.
    """
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    records: list[Record] = []
    pos = skip_whitespace(text, text.index("[") + 1)
    if pos < len(text) and text[pos] == "]":
        return records, _trailing_text_problems(file, text, pos + 1, lines)
    while True:
        start_line = lines.line_at(pos)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            message = f"invalid JSON ({err.msg} at column {err.colno}); fix it, records after it were not read"
            return records, [Problem(file, err.lineno, "json", message)]
        records.append((start_line, value))
        pos = skip_whitespace(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = skip_whitespace(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return records, _trailing_text_problems(file, text, pos + 1, lines)
        message = "expected ',' or ']' after this record; fix the array syntax, records after it were not read"
        return records, [Problem(file, lines.line_at(min(pos, len(text))), "json", message)]


def _trailing_text_problems(file: str, text: str, pos: int, lines: _LineCounter) -> list[Problem]:
    pos = skip_whitespace(text, pos)
    if pos >= len(text):
        return []
    message = "unexpected text after the closing ']'; remove it or move those records inside the array"
    return [Problem(file, lines.line_at(pos), "json", message)]


def csv_records(file: str, text: str) -> tuple[list[str], list[Record], list[Problem]]:
    """Header, rows as ``{column: cell}`` dicts with their starting line, and ragged-row problems."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    records: list[Record] = []
    problems: list[Problem] = []
    previous_end = 0  # reader.line_num after the previous row; a row starts on the line after it
    try:
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines between rows are harmless
            if not header:
                header = [name.strip() for name in row]
            elif len(row) != len(header):
                message = (
                    f"{len(row)} cells but the header has {len(header)} columns; "
                    "quote cells that contain commas or newlines"
                )
                problems.append(Problem(file, start, "row", message))
            else:
                records.append((start, dict(zip(header, row))))
    except csv.Error as err:
        message = f"unreadable CSV ({err}); fix the quoting, rows after it were not read"
        problems.append(Problem(file, reader.line_num, "row", message))
    return header, records, problems


def write_atomically(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to a temporary file beside ``path`` and rename it into place.

    The rename is atomic on the same file system, so readers see the old file or the complete new one,
    never half of it; if producing a chunk raises, the temporary file is removed and ``path`` is untouched.
    """
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file name to write to")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the final permissions, as for any normally created file.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
