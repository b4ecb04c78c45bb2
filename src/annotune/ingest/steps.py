"""The per-document steps, each a pure function, so any engine can run them.

``prepare`` (clean, filter, fingerprint) and ``finish`` (redact, chunk) need nothing but the document and
the config; only deduplication between them looks at other documents. The ``*_row`` variants take and
return flat dicts of JSON-friendly columns, the shape ``datasets.Dataset.map`` and Ray Data work with.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotune.ingest.chunk import chunk_text
from annotune.ingest.clean import clean_and_filter
from annotune.ingest.config import IngestConfig
from annotune.ingest.dedup import fingerprint
from annotune.ingest.document import Document
from annotune.ingest.redact import pii_key, redact


@dataclass
class Prepared:
    """A cleaned document, the filter that dropped it (or ``None``), and its duplicate fingerprints."""

    document: Document
    dropped_by: str | None = None
    boilerplate_lines: int = 0
    exact: str = ""
    signature: np.ndarray | None = None


def prepare(document: Document, cfg: IngestConfig) -> Prepared:
    cleaned = clean_and_filter(document.text, cfg)
    document.text = cleaned.text
    if cleaned.dropped_by:
        return Prepared(document, cleaned.dropped_by, cleaned.boilerplate_lines)
    document.meta["language"] = cleaned.language
    exact, signature = fingerprint(cleaned.text, cfg.num_perm, cfg.shingle_words) if cfg.dedup else ("", None)
    return Prepared(document, None, cleaned.boilerplate_lines, exact, signature)


def chunk_id(path: str, position: dict, text: str) -> str:
    """Stable across runs: the same text at the same place of the same file gets the same id."""
    key = f"{path}\0{json.dumps(position, sort_keys=True)}\0{text}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def finish(document: Document, cfg: IngestConfig) -> tuple[list[dict[str, Any]], Counter]:
    """Redact (unless turned off) and chunk one kept document into chunks.jsonl records."""
    keep = frozenset(pii_key(value) for value in cfg.keep_pii)
    text, pii = redact(document.text, cfg.redact_patterns, keep) if cfg.redact else (document.text, Counter())
    records = []
    for chunk in chunk_text(text, cfg.chunk_tokens, cfg.chunk_overlap):
        position = {**document.position, "chunk": chunk.index}
        if chunk.heading:
            position["heading"] = chunk.heading
        records.append({
            "id": chunk_id(document.path, position, chunk.text),
            "text": chunk.text,
            "source": {"path": document.path, "title": document.title, "url": document.url, "position": position},
            "meta": {**document.meta, "tokens": chunk.tokens},
        })
    return records, pii


def _row_document(row: dict[str, Any]) -> Document:
    return Document(text=row["text"], path=row["path"], title=row.get("title"), url=row.get("url"),
                    position=json.loads(row.get("position") or "{}"), meta=json.loads(row.get("meta") or "{}"))


def prepare_row(row: dict[str, Any], cfg: IngestConfig) -> dict[str, Any]:
    """``prepare`` on a flat row (position and meta as JSON strings); adds dropped_by, exact and signature."""
    prepared = prepare(_row_document(row), cfg)
    signature = prepared.signature.tolist() if prepared.signature is not None else []
    return {"text": prepared.document.text, "meta": json.dumps(prepared.document.meta),
            "dropped_by": prepared.dropped_by or "", "exact": prepared.exact, "signature": signature}


def finish_rows(batch: dict[str, list], cfg: IngestConfig) -> dict[str, list]:
    """``finish`` on a batch of rows; returns one row per chunk (a batched map may change the row count)."""
    out: dict[str, list] = {"id": [], "text": [], "source": [], "meta": []}
    for i in range(len(batch["text"])):
        row = {key: values[i] for key, values in batch.items()}
        records, _ = finish(_row_document(row), cfg)
        for record in records:
            out["id"].append(record["id"])
            out["text"].append(record["text"])
            out["source"].append(json.dumps(record["source"]))
            out["meta"].append(json.dumps(record["meta"]))
    return out


@dataclass
class Processed:
    """Everything about one document that does not depend on other documents: ``prepare`` and, for a
    document the filters keep, ``finish`` done ahead of the duplicate check (so one round trip to a worker
    process suffices; the records of a document found to be a duplicate are discarded)."""

    prepared: Prepared
    records: list[dict[str, Any]]
    pii: Counter


def process(document: Document, cfg: IngestConfig) -> Processed:
    prepared = prepare(document, cfg)
    if prepared.dropped_by:
        return Processed(prepared, [], Counter())
    records, pii = finish(prepared.document, cfg)
    return Processed(prepared, records, pii)
