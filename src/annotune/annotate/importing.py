"""Importing records: chunks from ``annotune ingest``, conversations in any dataset format, prompts and
model answers to rate or compare.

An import is all or nothing: every line is checked first and every problem is reported as ``file:line:
field``; only a clean file is written, in one transaction. Records carry the id they were imported with (a
hash of their content when they have none), so importing the same file again adds only what is new.

Records that cannot be annotated yet (a prompt without the answers to rate or compare, a ``correct`` record
without a draft) are stored as ``draft`` and enter the queue once ``annotune workbench suggest`` fills them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from annotune.annotate import schema
from annotune.annotate.errors import Invalid
from annotune.annotate.store import Project
from annotune.dataset import files
from annotune.dataset.formats import capped_lines, detect_format, read_dataset
from annotune.errors import DataError

KINDS = ("auto", "chunks", "conversations", "answers")
# Which kinds each task type takes.
ACCEPTS = {
    "write": ("chunks",),
    "correct": ("chunks", "conversations"),
    "rate": ("conversations", "answers"),
    "compare": ("conversations", "answers"),
    "label": ("chunks", "conversations"),
}


@dataclass
class Incoming:
    payload: dict[str, Any]
    source: dict[str, Any] | None
    ext_id: str | None
    where: str


@dataclass
class ImportResult:
    added: int = 0
    already_there: int = 0
    drafts: int = 0
    problems: list[str] = field(default_factory=list)


def _messages_text(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _json_lines(path: Path) -> list[tuple[int, Any]]:
    """The file's records by the datasets' own reader (a byte-order mark, U+2028 inside strings and JSON arrays
    are fine); every unreadable line is reported."""
    text, problems = files.read_text(path)
    records: list[tuple[int, Any]] = []
    if text is not None:
        records, problems = files.json_records(str(path), text)
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s), nothing imported:\n"
                        + capped_lines([str(p) for p in problems]))
    return records


def detect_kind(path: Path) -> str:
    for _, value in _json_lines(path)[:1]:
        if isinstance(value, dict):
            if "text" in value and "messages" not in value:
                return "chunks"
            prompts_only = "prompt" in value and not {"completion", "chosen"} & set(value)
            if "answer" in value or "answers" in value or prompts_only:
                return "answers"  # model answers, or prompts whose answers a model will draft
            return "conversations"
    raise DataError(f"{path}: no JSON object found; import JSONL (one object per line) or pass --kind")


def _chunk(value: Any, where: str, problems: list[str]) -> Incoming | None:
    if not isinstance(value, dict) or not isinstance(value.get("text"), str) or not value["text"].strip():
        problems.append(f"{where}:text: each chunk needs a non-empty 'text' string")
        return None
    ext_id = value.get("id")
    source = value.get("source") if isinstance(value.get("source"), dict) else None
    if isinstance(value.get("meta"), dict):
        source = {**(source or {}), "meta": value["meta"]}
    return Incoming({"text": value["text"]}, source, str(ext_id) if ext_id is not None else None, where)


def _prompt_messages(value: dict[str, Any], where: str, problems: list[str]) -> list[dict[str, str]] | None:
    if isinstance(value.get("prompt"), str) and value["prompt"].strip():
        return [{"role": "user", "content": value["prompt"]}]
    messages = value.get("messages")
    if isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    problems.append(f"{where}:prompt: give the question as 'prompt' (text) or 'messages' (a list of "
                    "{role, content})")
    return None


def _answer(item: Any, default_model: str) -> dict[str, str] | None:
    if isinstance(item, str):
        return {"content": item, "model": default_model}
    if isinstance(item, dict) and isinstance(item.get("content"), str):
        return {"content": item["content"], "model": str(item.get("model") or default_model)}
    return None


def _with_reference(payload: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``payload`` plus the record's reference answer, if it has one (shown to annotators beside the task, e.g.
    the held-out answer `annotune evaluate` compared against)."""
    reference = record.get("reference")
    return {**payload, "reference": reference} if isinstance(reference, str) and reference.strip() else payload


def _answers(value: Any, where: str, problems: list[str]) -> Incoming | None:
    if not isinstance(value, dict):
        problems.append(f"{where}:record: expected a JSON object")
        return None
    messages = _prompt_messages(value, where, problems)
    model = str(value.get("model") or "import")
    raw = value.get("answers", [value["answer"]] if "answer" in value else [])
    answers = [_answer(item, model) for item in raw] if isinstance(raw, list) else [None]
    if any(a is None for a in answers) or len(answers) > 2:
        problems.append(f"{where}:answers: give 'answer' (text) or 'answers' (up to two texts or "
                        "{content, model} objects)")
        return None
    if messages is None:
        return None
    ext_id = value.get("id")
    payload = _with_reference({"messages": messages, "answers": answers}, value)
    return Incoming(payload, value.get("source") if isinstance(value.get("source"), dict) else None,
                    str(ext_id) if ext_id is not None else None, where)


def _from_conversations(path: Path, fmt: str | None) -> tuple[list[Incoming], list[str]]:
    result = read_dataset(path, fmt)
    problems = [str(p) for p in result.problems]
    incoming = []
    for position, conv in enumerate(result.conversations, start=1):
        messages = conv.as_template_input()
        where = conv.location(position)
        answers = []
        if messages and messages[-1]["role"] == "assistant":
            answers = [{"content": messages.pop()["content"], "model": str(conv.meta.get("model", "import"))}]
        if not messages or messages[-1]["role"] != "user":
            problems.append(f"{where}:messages: the conversation must end with a user message (and its answer)")
            continue
        ext_id = conv.meta.get("id")
        payload = _with_reference({"messages": messages, "answers": answers}, conv.meta)
        incoming.append(Incoming(payload, {"path": str(path), "location": where},
                                 str(ext_id) if ext_id is not None else None, where))
    return incoming, problems


def _shape(task_type: str, kind: str, item: Incoming) -> tuple[dict[str, Any], str]:
    """The record payload for this task type, and whether it can be annotated now (open) or needs a draft."""
    payload, status = _shape_payload(task_type, kind, item)
    if "reference" in item.payload and task_type in ("correct", "rate", "compare"):
        payload["reference"] = item.payload["reference"]
    return payload, status


def _shape_payload(task_type: str, kind: str, item: Incoming) -> tuple[dict[str, Any], str]:
    p = item.payload
    if kind == "chunks":
        if task_type == "write":
            return {"context": p["text"]}, "open"
        if task_type == "correct":
            return {"context": p["text"], "question": "", "answer": "", "draft_by": None}, "draft"
        return {"text": p["text"]}, "open"  # label
    messages, answers = p["messages"], p["answers"]
    if task_type == "label":
        text = _messages_text(messages + [{"role": "assistant", "content": a["content"]} for a in answers])
        return {"text": text}, "open"
    if task_type == "correct":
        answer = answers[0] if answers else {"content": "", "model": None}
        payload = {"messages": messages[:-1], "question": messages[-1]["content"], "answer": answer["content"],
                   "draft_by": answer["model"]}
        return payload, "open" if answer["content"].strip() else "draft"
    if task_type == "rate":
        answer = answers[0] if answers else {"content": "", "model": None}
        return ({"messages": messages, "answer": answer["content"], "model": answer["model"]},
                "open" if answer["content"].strip() else "draft")
    return {"messages": messages, "answers": answers}, "open" if len(answers) == 2 else "draft"  # compare


def read_import(project: Project, path: str | Path, kind: str = "auto", fmt: str | None = None) -> list[
        tuple[dict[str, Any], str, Incoming]]:
    """Check the whole file; returns (payload, status, item) per record or raises listing every problem."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; import a file from it (`annotune ingest` writes chunks.jsonl)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if kind not in KINDS:
        raise Invalid("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "auto":
        kind = "conversations" if fmt else detect_kind(path)
    if kind not in ACCEPTS[project.task_type]:
        raise Invalid("kind", f"a {project.task_type} project imports {' or '.join(ACCEPTS[project.task_type])}, "
                      f"not {kind} (from {path})")
    problems: list[str] = []
    if kind == "conversations":
        incoming, problems = _from_conversations(path, fmt or detect_format(path))
    else:
        parse = _chunk if kind == "chunks" else _answers
        parsed = [parse(value, f"{path}:{line}", problems) for line, value in _json_lines(path)]
        incoming = [item for item in parsed if item is not None]
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s), nothing imported:\n" + capped_lines(problems))
    if not incoming:
        raise DataError(f"{path}: no records to import")
    return [(*_shape(project.task_type, kind, item), item) for item in incoming]


def content_key(payload: dict[str, Any]) -> str:
    """The key of a record imported without an id: a hash of what it holds, so importing the same file again
    (or the same record from another file) adds nothing twice."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "content:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def import_file(conn: Connection, project: Project, path: str | Path, kind: str = "auto",
                fmt: str | None = None, shown_as: str | None = None) -> ImportResult:
    """Import ``path`` into ``project`` in the caller's transaction. ``shown_as`` is the name the user knows the
    file by (an upload's own name, not the server's temporary copy): problems and sources use it."""
    try:
        shaped = read_import(project, path, kind, fmt)
    except DataError as exc:
        if shown_as is None:
            raise
        raise DataError(str(exc).replace(str(path), shown_as)) from None
    if shown_as is not None:
        for _, _, item in shaped:
            if item.source and item.source.get("path") == str(path):
                item.source = {**item.source, "path": shown_as,
                               "location": str(item.source.get("location", "")).replace(str(path), shown_as)}
    rec = schema.records
    known = {row.ext_id for row in conn.execute(
        sa.select(rec.c.ext_id).where(rec.c.project_id == project.id, rec.c.ext_id.is_not(None)))}
    result, now, rows = ImportResult(), time.time(), []
    for payload, status, item in shaped:
        key = item.ext_id if item.ext_id is not None else content_key(item.payload)
        if key in known:
            result.already_there += 1
            continue
        known.add(key)
        rows.append({"project_id": project.id, "ext_id": key, "payload": payload, "source": item.source,
                     "status": status, "submitted": 0, "created_at": now})
        result.drafts += status == "draft"
    for start in range(0, len(rows), 1000):
        conn.execute(rec.insert(), rows[start:start + 1000])
    result.added = len(rows)
    return result
