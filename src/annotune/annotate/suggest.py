"""Model-assisted drafts: a model proposes what annotators then check and correct.

=========  ========================================================================================
write      open records nobody has annotated yet get a suggested question/answer pair (pre-filled)
correct    draft records get the model's question and answer to correct
rate       draft records (a prompt without an answer) get the model's answer to rate
compare    draft records with fewer than two answers get one more (run twice, with two models)
=========  ========================================================================================

Every suggestion names the model that made it. Records that already have annotations are never changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotune.annotate import schema
from annotune.annotate.db import Database
from annotune.annotate.errors import Invalid
from annotune.annotate.store import Project, find_project

WRITE_SYSTEM = "You write training data: one question a reader could ask about a text, and its answer from the text."
WRITE_PROMPT = ("Text:\n{context}\n\nWrite one question that this text answers, then the answer. Reply in exactly "
                "this form:\nQuestion: ...\nAnswer: ...")
# One worked example: small models follow the form far more reliably after seeing it once.
WRITE_EXAMPLE = (
    "Our shop in Leeds opens at 9 a.m. and closes at 6 p.m. from Monday to Saturday. It is closed on Sundays.",
    ("Question: When is the Leeds shop open?\nAnswer: From 9 a.m. to 6 p.m., Monday to Saturday; it is closed on "
     "Sundays."),
)
_QA = re.compile(r"question\s*:\s*(?P<q>[^\n]+?)\s*\n?\s*answer\s*:\s*(?P<a>.+)", re.IGNORECASE | re.DOTALL)
_MARK = re.compile(r"^\s*(question|answer)\s*:\s*", re.IGNORECASE)
rec = schema.records


def parse_pair(text: str) -> dict[str, str] | None:
    """``Question: ... Answer: ...`` from a model's reply, else a leading question and the rest.

    Replies without both parts, or whose answer only repeats the question, are unusable (None).
    """
    match = _QA.search(text)
    if match:
        question = match.group("q").strip()
        answer = re.split(r"\n\s*\n|\n\s*question\s*:", match.group("a"), flags=re.IGNORECASE)[0].strip()
    elif "question:" in text.lower():
        return None  # the form was started but no answer followed
    else:
        head, mark, tail = text.partition("?")
        question, answer = (head.strip() + "?", tail.strip()) if mark else ("", "")
    question, answer = _MARK.sub("", question).strip(), _MARK.sub("", answer).strip()
    if not question or not answer or answer.lower().rstrip("?.! ") == question.lower().rstrip("?.! "):
        return None
    return {"question": question, "answer": answer}


def model_label(ref: str) -> str:
    path = Path(ref).expanduser()
    return path.name if path.exists() else ref


def _candidates(conn: Connection, project: Project, limit: int | None) -> list[Any]:
    if project.task_type == "label":
        raise Invalid("project", "label projects take no model drafts; annotators label the imported text")
    if project.task_type == "write":
        query = sa.select(rec.c.id, rec.c.payload).where(rec.c.project_id == project.id, rec.c.status == "open",
                                                         rec.c.submitted == 0)
    else:
        query = sa.select(rec.c.id, rec.c.payload).where(rec.c.project_id == project.id, rec.c.status == "draft")
    rows = [row for row in conn.execute(query.order_by(rec.c.id))
            if project.task_type != "write" or not row.payload.get("suggestion")]
    return rows[:limit] if limit else rows


def _prompt(task_type: str, payload: dict[str, Any]) -> list[dict[str, str]]:
    if task_type == "write" or (task_type == "correct" and not payload.get("question")):
        return [{"role": "system", "content": WRITE_SYSTEM},
                {"role": "user", "content": WRITE_PROMPT.format(context=WRITE_EXAMPLE[0])},
                {"role": "assistant", "content": WRITE_EXAMPLE[1]},
                {"role": "user", "content": WRITE_PROMPT.format(context=payload["context"])}]
    if task_type == "correct":
        return [*payload.get("messages", []), {"role": "user", "content": payload["question"]}]
    return payload["messages"]


def _filled(task_type: str, payload: dict[str, Any], reply: str, model: str) -> tuple[dict[str, Any], bool] | None:
    """The payload with the suggestion in it, and whether the record is now ready to annotate."""
    if task_type == "write":
        pair = parse_pair(reply)
        return ({**payload, "suggestion": {"model": model, "pairs": [pair]}}, True) if pair else None
    if not reply.strip():
        return None
    if task_type == "correct":
        if payload.get("question"):
            return {**payload, "answer": reply, "draft_by": model}, True
        pair = parse_pair(reply)
        return ({**payload, **pair, "draft_by": model}, True) if pair else None
    if task_type == "rate":
        return {**payload, "answer": reply, "model": model}, True
    answers = [*payload.get("answers", []), {"content": reply, "model": model}]
    return {**payload, "answers": answers}, len(answers) >= 2


Generate = Callable[[list[list[dict[str, str]]]], list[str]]  # conversations in, one reply each out


def suggest(db: Database, project_name: str, model_ref: str, *, batch_size: int = 8, limit: int | None = None,
            max_new_tokens: int = 160, on_batch: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Fill drafts for ``project_name`` with ``model_ref`` (hub id, folder, GGUF or run folder)."""
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import load_engine

    with db.transaction() as conn:
        if not _candidates(conn, find_project(conn, project_name), limit):
            return {"records": 0, "filled": 0, "unusable": 0}
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    with load_engine(model_ref, max_batch=batch_size) as engine:
        name = next(iter(engine.models))
        return fill_drafts(db, project_name, lambda convs: [r.text for r in engine.generate(name, convs, cfg)],
                           model_label(model_ref), batch_size=batch_size, limit=limit, on_batch=on_batch)


def fill_drafts(db: Database, project_name: str, generate: Generate, label: str, *, batch_size: int = 8,
                limit: int | None = None, on_batch: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Fill drafts with the replies of ``generate``, recorded as made by ``label``; returns the counts."""
    with db.transaction() as conn:
        project = find_project(conn, project_name)
        rows = _candidates(conn, project, limit)
    counts = {"records": len(rows), "filled": 0, "unusable": 0}
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        replies = [reply.strip() for reply in generate([_prompt(project.task_type, row.payload) for row in batch])]
        with db.transaction() as conn:
            for row, reply in zip(batch, replies):
                filled = _filled(project.task_type, row.payload, reply, label)
                if filled is None:
                    counts["unusable"] += 1
                    continue
                payload, ready = filled
                # Only records still untouched: an annotation that arrived meanwhile keeps what it saw.
                status = "open" if ready else "draft"
                changed = conn.execute(rec.update().where(rec.c.id == row.id, rec.c.submitted == 0).values(
                    payload=payload, status=status))
                counts["filled"] += changed.rowcount
        if on_batch:
            on_batch(min(start + batch_size, len(rows)), len(rows))
    return counts
