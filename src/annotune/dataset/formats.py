"""Read dataset files into :class:`Conversation` objects and write them back, in every supported format.

Formats (the names ``--format`` and ``--to`` take):

``openai``
    JSONL, one ``{"messages": [{"role", "content", "weight"?}], ...}`` per line.
``alpaca``
    JSON array or JSONL of ``{"instruction", "input"?, "output", "system"?}``; instruction and input
    become one user message, joined by a blank line.
``sharegpt``
    JSON array or JSONL of ``{"conversations": [{"from", "value", "weight"?}]}``; speakers map through
    :data:`annotune.dataset.records.SHAREGPT_ROLES`.
``prompt_completion``
    JSONL of ``{"prompt", "completion", "system"?}``.
``preference``
    JSONL of ``{"prompt", "chosen", "rejected"}`` (TRL's shape): ``prompt`` is text or a list of messages,
    ``chosen``/``rejected`` are text or a list of one assistant message. It reads as the prompt plus the
    chosen answer (what supervised fine-tuning trains on), with the rejected answer in ``meta["rejected"]``.
``csv`` (read only)
    Header row; question and answer columns (names configurable), optional ``system`` column.

Every other top-level key of a record (``id``, ``source``, ...) is kept in ``Conversation.meta``, together
with ``file`` and ``line`` (the 1-based line where the record starts, also inside JSON arrays), and written
back out by the writers.

Writing never drops turns: alpaca and prompt_completion hold a single exchange, so writing a multi-turn
conversation to them raises :class:`DataError` listing every such conversation by ``file:line``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from annotune.conversation import Conversation
from annotune.dataset import files, records
from annotune.dataset.problem import Problem
from annotune.errors import DataError

FORMATS = ("openai", "alpaca", "sharegpt", "prompt_completion", "preference", "csv")
WRITABLE_FORMATS = ("openai", "alpaca", "sharegpt", "prompt_completion", "preference")
# Past this many listed items an error message says "... and N more": enough to see the pattern.
MAX_LISTED = 50
# How many JSONL lines detection looks through for a parseable object before giving up.
_DETECT_SCAN_LINES = 100


@dataclass
class ReadResult:
    """What a file held: the conversations that parsed, every structural problem, and the format used."""

    conversations: list[Conversation]
    problems: list[Problem]
    format: str
    path: str = ""
    question_column: str = "question"
    answer_column: str = "answer"

    def field_name(self, conversation: Conversation, index: int | None = None, attr: str | None = None) -> str:
        """How the user's file spells a field, so a problem points at what to edit.

        ``index=None`` names the whole conversation; ``attr`` is ``"role"`` or ``"content"``.
        """
        if self.format in ("openai", "sharegpt"):
            base = "conversations" if self.format == "sharegpt" else "messages"
            if index is None:
                return base
            spelled = {"role": "from", "content": "value"} if self.format == "sharegpt" else {}
            return f"{base}[{index}]" + (f".{spelled.get(attr, attr)}" if attr else "")
        if index is None:
            return "record"
        if self.format == "preference":
            last = index == len(conversation.messages) - 1
            return "chosen" if last else f"prompt[{index}]" + (f".{attr}" if attr else "")
        # Flat formats: each message comes from one named field (or column).
        user_field = {"alpaca": "instruction", "prompt_completion": "prompt", "csv": self.question_column}
        answer_field = {"alpaca": "output", "prompt_completion": "completion", "csv": self.answer_column}
        role = conversation.messages[index].role
        return {"system": "system", "user": user_field[self.format]}.get(role, answer_field[self.format])


def capped_lines(lines: Sequence[str], limit: int = MAX_LISTED) -> str:
    """The lines joined, cut at ``limit`` with a count of the rest, so an error message stays readable."""
    shown = list(lines[:limit])
    if len(lines) > limit:
        shown.append(f"... and {len(lines) - limit} more")
    return "\n".join(shown)


# ------------------------------------------------------------------------------------------- detection


def _first_object_keys(text: str) -> list[str] | None:
    """Keys of the first record that parses as a JSON object, without decoding the whole file."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            first, _ = json.JSONDecoder().raw_decode(stripped, files.skip_whitespace(stripped, 1))
        except json.JSONDecodeError:
            return None
        return list(first) if isinstance(first, dict) else None
    for raw in text.split("\n", _DETECT_SCAN_LINES)[:_DETECT_SCAN_LINES]:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return list(value)
    return None


def _detect_from_text(file: str, suffix: str, text: str) -> str:
    if suffix.lower() == ".csv":
        return "csv"
    keys = _first_object_keys(text)
    found = set(keys or ())
    if "messages" in found:
        return "openai"
    if "conversations" in found:
        return "sharegpt"
    if {"chosen", "rejected"} <= found:
        return "preference"
    if "instruction" in found:
        return "alpaca"
    if {"prompt", "completion"} <= found:
        return "prompt_completion"
    if keys is None:
        _, problems = files.json_records(file, text)
        if problems:  # not JSON at all where it starts: say where, as reading it would
            raise DataError(str(problems[0]))
    seen = f"its keys are: {', '.join(keys)}" if keys else "no JSON object found in its first records"
    raise DataError(
        f"{file}: cannot tell the dataset format from the first record ({seen}); "
        f"pass --format with one of {', '.join(FORMATS)}"
    )


def detect_format(path: str | Path) -> str:
    """The format of ``path``: ``.csv`` by extension, JSON/JSONL by the keys of the first record."""
    path = Path(path)
    text, problems = files.read_text(path)
    if text is None:
        raise DataError(str(problems[0]))
    if not text.strip() and path.suffix.lower() != ".csv":
        raise DataError(f"{path}: the file is empty, so its format cannot be detected; add records")
    return _detect_from_text(str(path), path.suffix, text)


# --------------------------------------------------------------------------------------------- reading


def _read_json_format(result: ReadResult, text: str) -> None:
    parse = records.PARSERS[result.format]
    raw_records, problems = files.json_records(result.path, text)
    result.problems.extend(problems)
    for line, value in raw_records:
        ctx = records.RecordContext(result.path, line, result.problems)
        if not isinstance(value, dict):
            got = records.type_name(value)
            ctx.problem("record", f"expected a JSON object, got {got}; each record must be an object")
            continue
        conversation = parse(value, ctx)
        if conversation is not None:
            result.conversations.append(conversation)


def _read_csv(result: ReadResult, text: str) -> None:
    header, rows, problems = files.csv_records(result.path, text)
    result.problems.extend(problems)
    missing = False
    for option, column in (("question", result.question_column), ("answer", result.answer_column)):
        if column not in header:
            message = f"no '{column}' column (header: {', '.join(header)}); rename the column or pass --{option}-column"
            result.problems.append(Problem(result.path, 1, column, message))
            missing = True
    if missing:
        return  # every row would repeat the same complaint
    for line, row in rows:
        ctx = records.RecordContext(result.path, line, result.problems)
        result.conversations.append(records.parse_csv_row(row, ctx, result.question_column, result.answer_column))


def read_dataset(
    path: str | Path,
    fmt: str | None = None,
    *,
    question_column: str = "question",
    answer_column: str = "answer",
) -> ReadResult:
    """Every conversation in ``path`` plus every structural problem; reading never stops at the first one.

    ``fmt`` is one of :data:`FORMATS` or ``None`` to detect it. The CSV column options only apply to CSV.
    A missing file or an undetectable format raises :class:`DataError`; everything else is a problem.
    """
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    file = str(path)
    text, problems = files.read_text(Path(path))
    result = ReadResult([], problems, fmt or "unknown", file, question_column, answer_column)
    if text is None:
        return result
    if not text.strip():
        result.problems.append(Problem(file, 1, "file", "the file is empty; add records or check the path"))
        return result
    result.format = fmt or _detect_from_text(file, Path(path).suffix, text)
    if result.format == "csv":
        _read_csv(result, text)
    else:
        _read_json_format(result, text)
    if not result.conversations and not result.problems:
        result.problems.append(Problem(file, 1, "file", "the file holds no records; add records"))
    return result


# --------------------------------------------------------------------------------------------- writing


def _json_array(lines: Iterable[str]) -> Iterator[str]:
    # One record per line inside the array keeps files diffable and line numbers meaningful.
    separator = "[\n"
    for line in lines:
        yield separator + line
        separator = ",\n"
    yield "[]\n" if separator == "[\n" else "\n]\n"


def write_dataset(conversations: Iterable[Conversation], path: str | Path, to: str) -> int:
    """Write ``conversations`` to ``path`` in format ``to`` atomically; returns how many were written.

    openai and prompt_completion are written as JSONL; alpaca and sharegpt as a JSON array when ``path``
    ends in ``.json``, else JSONL. Every conversation is converted before anything is written, so a lossy
    conversion raises one :class:`DataError` naming all of them (``file:line``) and leaves ``path`` as it was.
    """
    if to not in WRITABLE_FORMATS:
        raise DataError(f"cannot write format {to!r}; use one of {', '.join(WRITABLE_FORMATS)}")
    serialise = records.SERIALISERS[to]
    lines: list[str] = []
    refused: list[str] = []
    for position, conversation in enumerate(conversations, start=1):
        try:
            lines.append(json.dumps(serialise(conversation), ensure_ascii=False))
        except records.LossyConversion as reason:
            refused.append(f"{conversation.location(position)}: {reason}")
    if refused:
        raise DataError(
            f"cannot write {len(refused)} conversation(s) as {to} without losing information:\n"
            + capped_lines(refused)
        )
    path = Path(path)
    as_array = to in ("alpaca", "sharegpt") and path.suffix.lower() == ".json"
    chunks = _json_array(lines) if as_array else (line + "\n" for line in lines)
    files.write_atomically(path, chunks)
    return len(lines)
