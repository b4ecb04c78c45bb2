"""Checks on what conversations mean, the same for every format, plus dataset statistics.

The readers in :mod:`annotune.dataset.formats` report structural problems (bad JSON, wrong types, missing
keys); this module adds roles, turn order, empty text, trainable turns, duplicates and length, collects
all of them without stopping, and is what training calls (:func:`load_valid`) before loading any model.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from annotune.conversation import ROLES, Conversation
from annotune.dataset.formats import ReadResult, capped_lines, read_dataset
from annotune.dataset.problem import Problem
from annotune.dataset.split import trained_answers, typical_count
from annotune.errors import DataError

__all__ = ["Problem", "Report", "Stats", "validate", "load_valid"]

TokenLength = Callable[[Conversation], int]
RARE_SHOWN = 3  # answers asked fewer ways than typical that a note names
RARE_CHARS = 80
_ORDER_HINT = "after the optional system message, turns alternate user, assistant, user, ... starting with user"


@dataclass
class Stats:
    """Shape of a dataset; lengths are in ``length_unit`` ("tokens" with a tokenizer, else "characters")."""

    examples: int
    turns: int
    assistant_turns: int
    trained_turns: int
    length_unit: str
    length_min: int
    length_mean: float
    length_p50: int
    length_p95: int
    length_max: int
    # answers (a chat's trained answers, as the split and fact balance count them) by how many chats give them
    ways: dict[int, int] = field(default_factory=dict)
    typical_ways: int = 1
    # where answers asked in fewer than half the typical number of chats are first asked, up to RARE_SHOWN
    rare: list[str] = field(default_factory=list)
    rare_count: int = 0

    @property
    def turns_per_example(self) -> float:
        return self.turns / self.examples if self.examples else 0.0

    def format_text(self) -> str:
        text = (
            f"examples: {self.examples}\n"
            f"turns: {self.turns} ({self.turns_per_example:.1f} per example)\n"
            f"assistant turns: {self.assistant_turns} ({self.trained_turns} trained on)\n"
            f"length in {self.length_unit}: min {self.length_min}, mean {self.length_mean:.1f}, "
            f"p50 {self.length_p50}, p95 {self.length_p95}, max {self.length_max}"
        )
        if self.ways:
            counts = ", ".join(f"in {_chats(ways)}: {answers}" for ways, answers in sorted(self.ways.items()))
            text += f"\nanswers given {counts} (typical: {self.typical_ways})"
        if self.rare_count:
            some = "s are" if self.rare_count != 1 else " is"
            text += (f"\n{self.rare_count} answer{some} given in fewer than half the typical {self.typical_ways} "
                     "chats; new wordings of a fact\nasked fewer ways are answered right least often "
                     "(docs/training.md, \"Wordings per fact\"): hold out questions on them\nand add the wordings "
                     "your users use. The first:\n" + "\n".join(f"  {where}" for where in self.rare))
            if self.rare_count > len(self.rare):
                text += f"\n  ... and {self.rare_count - len(self.rare)} more"
        return text


@dataclass
class Report:
    problems: list[Problem]
    stats: Stats

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_text(self) -> str:
        """Every problem, one per line, then a count, then the statistics."""
        lines = [str(problem) for problem in self.problems]
        count = len(self.problems)
        lines.append(f"{count} problem{'s' if count != 1 else ''} found" if count else "no problems found")
        return "\n".join(lines) + "\n\n" + self.stats.format_text()


def _percentile(sorted_values: list[int], percent: float) -> int:
    """Nearest-rank percentile: always a value that occurs in the data."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _chats(count: int) -> str:
    return f"{count} chat{'s' if count != 1 else ''}"


def _where(conversation: Conversation, position: int) -> str:
    """Where a conversation starts in its file, and its first question, for a note."""
    question = next((m.content for m in conversation.messages if m.role == "user"), "")
    question = " ".join(question.split())
    shown = question[:RARE_CHARS] + "..." if len(question) > RARE_CHARS else question
    return f"{conversation.location(position + 1)}: {shown}"


def asked_ways(conversations: list[Conversation]) -> tuple[dict[int, int], int, list[str], int]:
    """Answers by the number of chats that give them, the typical number, and where the answers given in fewer
    than half the typical number are first asked (the first RARE_SHOWN; the count of all). Chats that train nothing
    (a problem reported on its own) are left out."""
    teaching = [(i, c, answers) for i, c in enumerate(conversations) if (answers := trained_answers(c))]
    facts = [answers for _, _, answers in teaching]
    ways, typical = Counter(facts), typical_count(facts)
    rare, seen = [], set()
    for i, conv, answers in teaching:
        if 2 * ways[answers] < typical and answers not in seen:
            seen.add(answers)
            rare.append(_where(conv, i))
    return dict(Counter(ways.values())), typical, rare[:RARE_SHOWN], len(rare)


def compute_stats(conversations: list[Conversation], lengths: list[int], unit: str) -> Stats:
    ordered = sorted(lengths)
    roles = [m.role for c in conversations for m in c.messages]
    trained = sum(c.trains_on(i) for c in conversations for i in range(len(c.messages)))
    ways, typical, rare, rare_count = asked_ways(conversations)
    return Stats(
        examples=len(conversations),
        turns=len(roles),
        assistant_turns=roles.count("assistant"),
        trained_turns=trained,
        length_unit=unit,
        length_min=ordered[0] if ordered else 0,
        length_mean=sum(ordered) / len(ordered) if ordered else 0.0,
        length_p50=_percentile(ordered, 50),
        length_p95=_percentile(ordered, 95),
        length_max=ordered[-1] if ordered else 0,
        ways=ways,
        typical_ways=typical,
        rare=rare,
        rare_count=rare_count,
    )


class _Checker:
    """Problems of one conversation, named the way its source file spells the fields."""

    def __init__(self, source: ReadResult, conversation: Conversation) -> None:
        self.source = source
        self.conversation = conversation
        self.problems: list[Problem] = []

    def add(self, index: int | None, attr: str | None, message: str) -> None:
        meta = self.conversation.meta
        field = self.source.field_name(self.conversation, index, attr)
        self.problems.append(Problem(meta.get("file", self.source.path), meta.get("line", 0), field, message))

    def check_messages(self) -> bool:
        """Per-message checks; returns whether every role is known (order checks need that)."""
        roles_known = True
        for i, message in enumerate(self.conversation.messages):
            if message.role not in ROLES:
                self.add(i, "role", f"unknown role {message.role!r}; use system, user or assistant")
                roles_known = False
            if not message.content.strip():
                self.add(i, "content", "empty content; write the message text or remove the message")
        return roles_known

    def check_order(self) -> None:
        messages = self.conversation.messages
        roles = [m.role for m in messages]
        if not roles:
            self.add(None, None, "no messages; add at least a user message and the assistant answer")
            return
        for i, role in enumerate(roles):
            if role == "system" and i > 0:
                self.add(i, "role", f"system message at position {i}; only one is allowed and it must come first")
        if "assistant" not in roles:
            self.add(None, None, "no assistant message; add the answer to train on as an assistant message")
            return
        turns = [(i, role) for i, role in enumerate(roles) if role != "system"]
        for k, (i, role) in enumerate(turns):
            expected = "user" if k % 2 == 0 else "assistant"
            if role != expected:
                self.add(i, "role", f"expected {expected!r} here, got {role!r}; {_ORDER_HINT}")
                break  # after one misplaced turn every later turn is "wrong" too; one report is enough
        if roles[-1] != "assistant":
            message = f"the conversation ends with a {roles[-1]!r} message; end with the assistant answer to train on"
            self.add(len(roles) - 1, "role", message)
        if not any(self.conversation.trains_on(i) for i in range(len(messages))):
            message = "every assistant message has weight 0, so nothing would be trained; set weight 1 on at least one"
            self.add(None, None, message)


def _duplicate_key(conversation: Conversation) -> tuple[tuple[str, str, int | None], ...]:
    return tuple((m.role, m.content, m.weight) for m in conversation.messages)


def validate(
    read_result: ReadResult,
    token_length: TokenLength | None = None,
    max_length: int | None = None,
) -> Report:
    """All problems of a read dataset (the reader's and the semantic ones), sorted by line, plus statistics.

    Lengths are counted with ``token_length`` when given, else in characters. The length limit needs a
    token counter, since a character limit would say nothing about what fits the model.
    """
    if max_length is not None and token_length is None:
        raise ValueError("max_length needs token_length to count tokens")
    problems = list(read_result.problems)
    first_seen: dict[tuple, Conversation] = {}
    lengths: list[int] = []
    for conversation in read_result.conversations:
        checker = _Checker(read_result, conversation)
        if checker.check_messages():
            checker.check_order()
        first = first_seen.setdefault(_duplicate_key(conversation), conversation)
        if first is not conversation:
            where = f"line {first.meta['line']}" if "line" in first.meta else "an earlier position"
            checker.add(None, None, f"duplicate of the conversation at {where}; remove one of them")
        length = token_length(conversation) if token_length else sum(len(m.content) for m in conversation.messages)
        lengths.append(length)
        if max_length is not None and length > max_length:
            message = f"{length} tokens, over --max-length {max_length}; shorten it or raise --max-length"
            checker.add(None, None, message)
        problems.extend(checker.problems)
    problems.sort(key=lambda p: (p.file, p.line))  # stable: keeps field order within a line
    unit = "tokens" if token_length else "characters"
    return Report(problems=problems, stats=compute_stats(read_result.conversations, lengths, unit))


def load_valid(
    path: str | Path,
    fmt: str | None = None,
    token_length: TokenLength | None = None,
    max_length: int | None = None,
    **csv_opts: str,
) -> list[Conversation]:
    """The conversations of ``path``, or :class:`DataError` listing every problem (capped for readability).

    ``csv_opts`` are ``question_column`` / ``answer_column`` for CSV files.
    """
    result = read_dataset(path, fmt, **csv_opts)
    report = validate(result, token_length=token_length, max_length=max_length)
    if not report.ok:
        count = len(report.problems)
        raise DataError(
            f"{path}: {count} problem{'s' if count != 1 else ''}; fix them and run again "
            f"(`annotune data validate {path}` lists them all with statistics):\n"
            + capped_lines([str(p) for p in report.problems])
        )
    return result.conversations
