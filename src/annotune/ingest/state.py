"""Incremental re-runs: what the last run read (size, mtime, content hash -> documents and chunk ids), and
atomic writes so that an interrupted run never leaves a half-written output behind."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from annotune.ingest.config import IngestConfig

STATE_FILE = ".ingest-state.json"
SIGNATURES_FILE = ".ingest-signatures.npz"
STATE_VERSION = 1
# Options that change which files are read but not what a read file turns into.
_NOT_IN_FINGERPRINT = {"progress", "max_file_mb", "workers"}


class AtomicFile:
    """A file written under a temporary name beside ``path`` and renamed over it only on :meth:`commit`."""

    def __init__(self, path: Path, binary: bool = False) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        self.handle = open(self.temp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"}))

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temp, self.path)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self.handle.closed:  # not committed: an error or an interrupt; the old file stays as it was
            self.handle.close()
            self.temp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    with AtomicFile(path) as out:
        out.handle.write(text)
        out.commit()


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_fingerprint(cfg: IngestConfig) -> str:
    values = {k: v for k, v in cfg.model_dump().items() if k not in _NOT_IN_FINGERPRINT}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FileState:
    size: int
    mtime_ns: int
    sha256: str
    documents: int = 0
    docs: list[str] = field(default_factory=list)  # keys of the documents kept (their signatures are saved)
    chunks: list[str] = field(default_factory=list)
    dup_of: list[str] = field(default_factory=list)  # files holding the kept copies of this file's duplicates


@dataclass
class Manifest:
    config: str
    chunks_size: int = 0
    chunks_mtime_ns: int = 0
    files: dict[str, FileState] = field(default_factory=dict)

    def save(self, out: Path) -> None:
        data = {"version": STATE_VERSION, "config": self.config, "chunks_size": self.chunks_size,
                "chunks_mtime_ns": self.chunks_mtime_ns, "files": {k: asdict(v) for k, v in self.files.items()}}
        write_text_atomically(out / STATE_FILE, json.dumps(data) + "\n")


def load_manifest(out: Path, cfg: IngestConfig, notes: list[str]) -> Manifest | None:
    """The last run's manifest when it still describes ``out``; otherwise ``None`` and a note saying why."""
    path, chunks = out / STATE_FILE, out / "chunks.jsonl"
    if not path.is_file() or not chunks.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {k: FileState(**v) for k, v in data["files"].items()}
        manifest = Manifest(data["config"], data["chunks_size"], data["chunks_mtime_ns"], files)
    except (ValueError, KeyError, TypeError):
        notes.append(f"{path} is unreadable; every file was read again")
        return None
    if data.get("version") != STATE_VERSION or manifest.config != config_fingerprint(cfg):
        notes.append("the configuration changed since the last run; every file was read again")
        return None
    stat = chunks.stat()
    if (stat.st_size, stat.st_mtime_ns) != (manifest.chunks_size, manifest.chunks_mtime_ns):
        notes.append("chunks.jsonl changed after the last run (edited, or that run was interrupted); "
                     "every file was read again")
        return None
    return manifest


def unchanged(path: Path, previous: FileState | None) -> FileState | None:
    """``previous`` (with a refreshed mtime) if the file's content is what it was, else ``None``."""
    if previous is None:
        return None
    stat = path.stat()
    if stat.st_size != previous.size:
        return None
    if stat.st_mtime_ns != previous.mtime_ns:
        if content_hash(path) != previous.sha256:
            return None
        previous.mtime_ns = stat.st_mtime_ns  # touched, not changed
    return previous
