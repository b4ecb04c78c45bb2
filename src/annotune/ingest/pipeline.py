"""Run ingest over files and folders: discover, read, prepare, deduplicate, finish, write, report.

Documents stream through one at a time, so memory grows only with the deduplication index (about 0.6 KB
per kept document) and the report, never with the size of the corpus text. Outputs are written under
temporary names and renamed at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from annotune.errors import AnnotuneError
from annotune.ingest.config import IngestConfig
from annotune.ingest.dedup import Deduplicator
from annotune.ingest.document import Document, FileNotes, ReadError
from annotune.ingest.readers import document_readers
from annotune.ingest.report import FileEntry, Report
from annotune.ingest.state import (SIGNATURES_FILE, AtomicFile, FileState, Manifest, config_fingerprint,
                                   content_hash, load_manifest, unchanged, write_text_atomically)
from annotune.ingest.steps import finish, prepare


@dataclass
class Source:
    path: Path
    shown: str  # the path as the user gave it (or under the folder they gave): what chunks cite


def discover(paths: list[str], out: Path) -> list[Source]:
    """Every file under ``paths``, sorted, without hidden files and without the output folder itself."""
    sources: list[Source] = []
    out = out.resolve()
    for given in paths:
        root = Path(given)
        if not root.exists() and not root.is_symlink():
            raise AnnotuneError(f"{given}: no such file or folder; check the path")
        if not root.is_dir():
            sources.append(Source(root, given))
            continue
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or out in path.resolve().parents:
                continue
            if path.is_file() or (path.is_symlink() and not path.exists()):
                sources.append(Source(path, str(root / relative)))
    return sources


@dataclass
class Run:
    """State of one ingest run, shared by the per-file and per-document steps below."""

    cfg: IngestConfig
    report: Report
    out_handle: object
    dedup: Deduplicator | None
    manifest: Manifest
    places: dict[str, dict] = field(default_factory=dict)  # kept document key -> its path and position


def ingest(paths: list[str], out: Path, cfg: IngestConfig) -> Report:
    started = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise AnnotuneError(f"--out {out}: is a file; give a folder for chunks.jsonl and report.json")
    sources = discover(paths, out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out=str(out), redact=cfg.redact)
    previous = load_manifest(out, cfg, report.notes)
    keep, todo = _plan(sources, previous, report)
    manifest = Manifest(config_fingerprint(cfg), files=keep)
    dedup = Deduplicator(cfg.near_dup_threshold, cfg.num_perm) if cfg.dedup else None
    kept_docs = {key for state in keep.values() for key in state.docs}
    if dedup is not None and previous is not None and (out / SIGNATURES_FILE).is_file():
        dedup.load(out / SIGNATURES_FILE, kept_docs)
    with AtomicFile(out / "chunks.jsonl") as chunks_out:
        report.chunks_total = _copy_kept_chunks(out / "chunks.jsonl", keep, chunks_out.handle) if previous else 0
        run = Run(cfg, report, chunks_out.handle, dedup, manifest)
        _read_all(todo, run)
        chunks_out.commit()
    if dedup is not None:
        with AtomicFile(out / SIGNATURES_FILE, binary=True) as signatures:
            dedup.save(signatures.handle)
            signatures.commit()
    stat = (out / "chunks.jsonl").stat()
    manifest.chunks_size, manifest.chunks_mtime_ns = stat.st_size, stat.st_mtime_ns
    manifest.save(out)
    report.files.sort(key=lambda entry: entry.path)
    report.seconds = time.perf_counter() - started
    write_text_atomically(out / "report.json", report.to_json())
    return report


def _plan(sources: list[Source], previous: Manifest | None, report: Report) -> tuple[dict[str, FileState], list[Source]]:
    """Files kept from the last run (unchanged, and not duplicates of changed ones) and files to read."""
    old = previous.files if previous else {}
    keep: dict[str, FileState] = {}
    for source in sources:
        try:
            state = unchanged(source.path, old.get(source.shown))
        except OSError:
            state = None
        if state is not None:
            keep[source.shown] = state
    present = {source.shown for source in sources}
    gone = set(old) - set(keep)
    for shown in sorted(set(old) - present):
        report.files.append(FileEntry(shown, "removed", "no longer in the input; its chunks were dropped"))
    # A kept file whose duplicates pointed at a changed or removed file is read again: its documents may now
    # be the first copies.
    while stale := [shown for shown, state in keep.items() if gone.intersection(state.dup_of)]:
        for shown in stale:
            gone.add(shown)
            del keep[shown]
    for shown, state in keep.items():
        report.files.append(FileEntry(shown, "unchanged", None, state.documents, len(state.docs), len(state.chunks)))
    return keep, [source for source in sources if source.shown not in keep]


def _copy_kept_chunks(path: Path, keep: dict[str, FileState], handle) -> int:
    wanted = {chunk for state in keep.values() for chunk in state.chunks}
    copied = 0
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and json.loads(line)["id"] in wanted:
                handle.write(line)
                copied += 1
    return copied


def _read_all(sources: list[Source], run: Run) -> None:
    from tqdm import tqdm

    readers = document_readers()
    bar = tqdm(sources, unit="file", desc="ingest", disable=not run.cfg.progress, leave=False)
    for source in bar:
        entry, state = _read_file(source, readers, run)
        run.report.files.append(entry)
        if state is not None:
            run.manifest.files[source.shown] = state
        bar.set_postfix(chunks=run.report.chunks_total, refresh=False)


def _skip_reason(source: Source, readers: dict, cfg: IngestConfig) -> str | None:
    suffix = source.path.suffix.lower()
    if suffix not in readers:
        return f"unsupported file type '{suffix or '(none)'}' (supported: {', '.join(sorted(readers))})"
    size_mb = source.path.stat().st_size / 2**20
    if size_mb > cfg.max_file_mb:
        return (f"{size_mb:.3g} MB is over max_file_mb ({cfg.max_file_mb:g} MB); "
                "split the file or raise --max-file-mb")
    return None


def _read_file(source: Source, readers: dict, run: Run) -> tuple[FileEntry, FileState | None]:
    """Read one file through its reader; any failure becomes the file's reason and the run goes on."""
    entry = FileEntry(source.shown, "read")
    state = FileState(0, 0, "")
    notes = FileNotes()
    try:
        reason = _skip_reason(source, readers, run.cfg)
        if reason:
            entry.status, entry.reason = "skipped", reason
            return entry, None
        stat = source.path.stat()
        state.size, state.mtime_ns, state.sha256 = stat.st_size, stat.st_mtime_ns, content_hash(source.path)
        for document in readers[source.path.suffix.lower()](source.path, source.shown, run.cfg, notes):
            entry.documents += 1
            _process_document(document, f"{source.shown}#{entry.documents}", run, entry, state)
    except ReadError as exc:
        entry.reason = str(exc)
    except OSError as exc:
        entry.reason = f"cannot read the file ({exc.strerror or exc}); check that it exists and is readable"
    except (UnicodeError, ValueError, LookupError, RuntimeError, AttributeError, TypeError) as exc:
        # A damaged file can break a third-party parser in many ways; the other files still get read.
        entry.reason = f"could not parse the file ({type(exc).__name__}: {exc})"
    entry.notes = notes.as_list()
    state.documents = entry.documents
    if entry.reason:
        entry.status = "partial" if entry.documents else "failed"
        return entry, None  # not recorded: the next run tries it again
    return entry, state


def _process_document(document: Document, key: str, run: Run, entry: FileEntry, state: FileState) -> None:
    prepared = prepare(document, run.cfg)
    report = run.report
    report.boilerplate_lines_removed += prepared.boilerplate_lines
    if prepared.dropped_by:
        report.drops[prepared.dropped_by] += 1
        return
    where = {"path": document.path, "position": document.position}
    if run.dedup is not None:
        duplicate = run.dedup.check(key, prepared.exact, prepared.signature)
        if duplicate is not None:
            kept_where = run.places.get(duplicate.kept) or {"path": duplicate.kept.rsplit("#", 1)[0]}
            report.duplicate(key, where, duplicate, kept_where)
            if kept_where["path"] not in state.dup_of:
                state.dup_of.append(kept_where["path"])
            return
        run.places[key] = where
    records, pii = finish(document, run.cfg)
    for record in records:
        run.out_handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        state.chunks.append(record["id"])
    entry.kept += 1
    entry.chunks += len(records)
    state.docs.append(key)
    report.chunks_total += len(records)
    report.pii.update(pii)
    report.languages[document.meta.get("language") or "unknown"] += 1
