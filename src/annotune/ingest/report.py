"""What a run did, file by file and filter by filter: ``report.json`` and the printed summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from annotune.ingest.clean import FILTERS
from annotune.ingest.dedup import Duplicate

_LISTED = 20  # files with a problem named in the printed summary; report.json lists them all


@dataclass
class FileEntry:
    """One input file: ``read``, ``unchanged`` (kept from the last run), ``partial``, ``failed``, ``skipped``
    or ``removed`` (gone since the last run), with the reason when it is not ``read``."""

    path: str
    status: str
    reason: str | None = None
    documents: int = 0
    kept: int = 0
    chunks: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        row = {"path": self.path, "status": self.status, "reason": self.reason, "documents": self.documents,
               "kept": self.kept, "chunks": self.chunks}
        if self.notes:
            row["notes"] = self.notes
        return row


@dataclass
class Report:
    out: str
    redact: bool = True
    files: list[FileEntry] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    boilerplate_lines_removed: int = 0
    pii: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    chunks_total: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def duplicate(self, key: str, where: dict[str, Any], duplicate: Duplicate, kept_where: dict[str, Any]) -> None:
        self.drops[f"duplicate_{duplicate.kind}"] += 1
        cluster = self.clusters.setdefault(duplicate.kept, {"kept": {"key": duplicate.kept, **kept_where},
                                                            "dropped": []})
        cluster["dropped"].append({"key": key, **where, "kind": duplicate.kind, "similarity": duplicate.similarity})

    def count(self, status: str) -> int:
        return sum(1 for entry in self.files if entry.status == status)

    def as_dict(self) -> dict[str, Any]:
        new_docs = sum(entry.documents for entry in self.files if entry.status in ("read", "partial"))
        return {
            "files": {status: self.count(status) for status in
                      ("read", "unchanged", "partial", "failed", "skipped", "removed")},
            "documents": {"read": new_docs, "kept": sum(e.kept for e in self.files if e.status != "removed"),
                          "new_kept": sum(e.kept for e in self.files if e.status in ("read", "partial"))},
            "chunks": {"total": self.chunks_total,
                       "new": sum(e.chunks for e in self.files if e.status in ("read", "partial"))},
            "drops": {name: self.drops.get(name, 0) for name in FILTERS + ("duplicate_exact", "duplicate_near")},
            "boilerplate_lines_removed": self.boilerplate_lines_removed,
            "duplicates": {"exact": self.drops.get("duplicate_exact", 0), "near": self.drops.get("duplicate_near", 0),
                           "clusters": list(self.clusters.values())},
            "pii": {"redacted": self.redact, "counts": dict(sorted(self.pii.items()))},
            "languages": dict(self.languages.most_common()),
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "file_list": [entry.as_dict() for entry in self.files],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n"

    def summary(self) -> str:
        data = self.as_dict()
        files, docs = data["files"], data["documents"]
        counted = ", ".join(f"{n} {status}" for status, n in files.items() if n)
        lines = [(f"{counted} file(s); " if counted else "no files of a supported type found; ") +
                 f"{docs['read']} new document(s), {docs['new_kept']} kept; "
                 f"{data['chunks']['new']} new chunk(s), {data['chunks']['total']} in total"]
        drops = {name: n for name, n in data["drops"].items() if n}
        if drops:
            lines.append("dropped: " + ", ".join(f"{name} {n}" for name, n in drops.items())
                         + (f" ({len(self.clusters)} duplicate clusters)" if self.clusters else ""))
        if self.boilerplate_lines_removed:
            lines.append(f"boilerplate lines removed: {self.boilerplate_lines_removed}")
        if not self.redact:
            lines.append("PII redaction: off (--no-redact)")
        elif self.pii:
            lines.append("redacted: " + ", ".join(f"{kind} {n}" for kind, n in sorted(self.pii.items())))
        problems = [entry for entry in self.files if entry.status in ("failed", "partial", "skipped")]
        lines.extend(f"  {entry.status}: {entry.path}: {entry.reason}" for entry in problems[:_LISTED])
        if len(problems) > _LISTED:
            lines.append(f"  ... and {len(problems) - _LISTED} more (see report.json)")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(f"wrote {self.out}/chunks.jsonl and {self.out}/report.json in {self.seconds:.1f} s")
        return "\n".join(lines)
