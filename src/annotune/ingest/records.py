"""Readers for record files: CSV rows and JSONL/JSON objects, one document per record.

A chosen column or field holds the text (``text_field``, dotted for nested objects); title and URL fields
feed the provenance and every other field goes to ``meta``, which keeps the metadata of social-media exports
(author, timestamp, likes ...). Files are streamed, so a large export never sits in memory whole.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotune.ingest.config import IngestConfig
from annotune.ingest.decode import sniff_encoding
from annotune.ingest.document import Document, FileNotes, ReadError

_MISSING = object()


def field_value(record: dict, dotted: str) -> Any:
    """``record['a']['b']`` for ``'a.b'``; a key that itself contains a dot wins over the nested reading."""
    if dotted in record:
        return record[dotted]
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _as_text(value: Any) -> str | None:
    if value is _MISSING or value is None:
        return None
    return value if isinstance(value, str) else str(value)


def record_document(record: dict, shown: str, position: dict, cfg: IngestConfig) -> Document | None:
    """The document of one record, or ``None`` when it has no text field."""
    text = _as_text(field_value(record, cfg.text_field))
    if text is None:
        return None
    used = {cfg.text_field, cfg.title_field, cfg.url_field}
    top = cfg.text_field.split(".")[0]
    meta = {k: v for k, v in record.items() if k not in used and not (k == top and isinstance(v, dict))
            and v not in (None, "")}
    return Document(text=text, path=shown, title=_as_text(field_value(record, cfg.title_field)),
                    url=_as_text(field_value(record, cfg.url_field)), position=position, meta=meta)


def read_csv(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    encoding = sniff_encoding(path)
    if encoding not in ("utf-8", "utf-8-sig"):
        notes.add(f"not UTF-8; decoded as {encoding}")
    # A long text cell is normal here; the file-size limit already bounds it.
    csv.field_size_limit(min(sys.maxsize, int(cfg.max_file_mb * 2**20) + 1))
    with path.open("r", encoding=encoding, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if cfg.text_field not in columns:
            raise ReadError(f"no column '{cfg.text_field}' (columns: {', '.join(columns) or 'none'}); "
                            "set text_field (--text-field) to the column that holds the text")
        line = 1
        try:
            for row in reader:
                start, line = line + 1, reader.line_num
                if None in row:
                    notes.add(f"line {start}: more cells than header columns; extra cells ignored")
                    row.pop(None)
                document = record_document(row, shown, {"row": start}, cfg)
                if document is not None and document.text.strip():
                    yield document
        except csv.Error as exc:
            notes.add(f"line {reader.line_num}: unreadable CSV ({exc}); rows after it were not read")


def read_jsonl(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    encoding = sniff_encoding(path)
    produced = 0
    with path.open("r", encoding=encoding) as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                notes.add(f"line {number}: invalid JSON ({exc.msg}); line skipped")
                continue
            document = _record_or_note(record, shown, {"line": number}, cfg, notes, f"line {number}")
            if document is not None:
                produced += 1
                yield document
    if produced == 0 and notes.total:
        raise ReadError(f"no record had a '{cfg.text_field}' field: {notes.items[0]}")


def read_json(path: Path, shown: str, cfg: IngestConfig, notes: FileNotes) -> Iterator[Document]:
    """A JSON array of records (the shape of many social-media exports), or an object with one such array."""
    encoding = sniff_encoding(path)
    try:
        data = json.loads(path.read_text(encoding=encoding))
    except json.JSONDecodeError as exc:
        raise ReadError(f"invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise ReadError("expected a JSON array of records (or JSONL, one record per line)")
    produced = 0
    for index, record in enumerate(data):
        document = _record_or_note(record, shown, {"index": index}, cfg, notes, f"record {index}")
        if document is not None:
            produced += 1
            yield document
    if produced == 0:
        raise ReadError(f"no record had a '{cfg.text_field}' field; set text_field (--text-field)")


def _record_or_note(record: Any, shown: str, position: dict, cfg: IngestConfig, notes: FileNotes,
                    where: str) -> Document | None:
    if not isinstance(record, dict):
        notes.add(f"{where}: not a JSON object; skipped")
        return None
    document = record_document(record, shown, position, cfg)
    if document is None:
        notes.add(f"{where}: no '{cfg.text_field}' field; skipped (set text_field to the field with the text)")
    return document
