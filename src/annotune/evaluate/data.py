"""Held-out questions: any dataset format; the last assistant turn is the reference answer, everything before it
the prompt, and an optional ``keys`` list per record holds strings a correct answer must contain."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from annotune.dataset.formats import capped_lines, read_dataset
from annotune.errors import DataError


@dataclass
class Question:
    id: str
    messages: list[dict[str, str]]  # the prompt: ends with the user's question
    reference: str
    keys: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


def read_questions(path: str | Path, fmt: str | None = None) -> list[Question]:
    """Every record as a :class:`Question`; all problems reported together as file:line:field."""
    result = read_dataset(path, fmt)
    problems = [str(p) for p in result.problems]
    questions, seen = [], set()
    for position, conv in enumerate(result.conversations, start=1):
        where = conv.location(position)
        messages = conv.as_template_input()
        if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
            problems.append(f"{where}:{result.field_name(conv)}: end with the user's question and the reference "
                            "answer (an assistant message)")
            continue
        if not messages[-1]["content"].strip():
            problems.append(f"{where}:{result.field_name(conv, len(messages) - 1, 'content')}: the reference "
                            "answer is empty")
            continue
        keys = conv.meta.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
            problems.append(f"{where}:keys: expected a list of non-empty strings that a correct answer contains, "
                            f"got {keys!r}")
            continue
        qid = str(conv.meta.get("id", position))
        if qid in seen:
            problems.append(f"{where}:id: {qid!r} is used twice; ids must be unique")
            continue
        seen.add(qid)
        questions.append(Question(qid, messages[:-1], messages[-1]["content"], [k.strip() for k in keys], where))
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s):\n" + capped_lines(problems))
    if not questions:
        raise DataError(f"{path}: no questions found")
    return questions
