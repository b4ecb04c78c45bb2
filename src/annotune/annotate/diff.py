"""Word-level differences between a draft and what an annotator made of it, for the review page."""

from __future__ import annotations

import difflib
import re
from itertools import zip_longest
from typing import Any

_TOKENS = re.compile(r"\s+|[^\s]+")


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """``(op, text)`` runs that turn ``before`` into ``after``: op is ``same``, ``del`` or ``ins``."""
    old, new = _TOKENS.findall(before or ""), _TOKENS.findall(after or "")
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(("same", "".join(old[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(old[i1:i2])))
        if j2 > j1:
            out.append(("ins", "".join(new[j1:j2])))
    return out


def draft_changes(task_type: str, payload: dict[str, Any], value: dict[str, Any]) -> list[dict[str, Any]]:
    """For each field an annotator started from a draft: the label, the draft, the answer and their diff.

    write: the model's suggested pairs against the submitted pairs (pair by pair); correct: the draft question
    and answer against the corrected ones (nothing when the draft was rejected). Empty without a draft.
    """
    rows: list[dict[str, Any]] = []
    if task_type == "write" and isinstance(payload.get("suggestion"), dict):
        suggested, written = payload["suggestion"].get("pairs") or [], value.get("pairs") or []
        for i, (draft, pair) in enumerate(zip_longest(suggested, written, fillvalue={})):
            for part in ("question", "answer"):
                rows.append(_row(f"Pair {i + 1} {part}", draft.get(part, ""), pair.get(part, "")))
    elif task_type == "correct" and value.get("verdict") != "rejected":
        for part in ("question", "answer"):
            rows.append(_row(part.capitalize(), payload.get(part, ""), value.get(part, "")))
    return rows


def _row(label: str, draft: str, final: str) -> dict[str, Any]:
    return {"label": label, "draft": draft, "final": final, "changed": draft.strip() != final.strip(),
            "diff": word_diff(draft, final)}
