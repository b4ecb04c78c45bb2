"""Run ingest over files and folders: discover, read, prepare, deduplicate, finish, write, report.

Documents stream through one at a time, so memory grows only with the deduplication index (about 0.6 KB
per kept document) and the report, never with the size of the corpus text. Outputs are written under
temporary names and renamed at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
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
from annotune.ingest.steps import Processed
from annotune.ingest.workers import Workers

_BATCH = 64  # documents per round trip to a worker process


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
        _read_all(todo, Run(cfg, report, chunks_out.handle, dedup, manifest))
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
    workers = Workers(run.cfg, run.cfg.workers)
    bar = tqdm(sources, unit="file", desc="ingest", disable=not run.cfg.progress, leave=False)
    try:
        for source in bar:
            for context, results in _read_file(source, readers, run, workers):
                _absorb(context, results, run)
            bar.set_postfix(chunks=run.report.chunks_total, refresh=False)
        for context, results in workers.drain():
            _absorb(context, results, run)
    finally:
        workers.close()


def _skip_reason(source: Source, readers: dict, cfg: IngestConfig) -> str | None:
    suffix = source.path.suffix.lower()
    if suffix not in readers:
        return f"unsupported file type '{suffix or '(none)'}' (supported: {', '.join(sorted(readers))})"
    size_mb = source.path.stat().st_size / 2**20
    if size_mb > cfg.max_file_mb:
        return (f"{size_mb:.3g} MB is over max_file_mb ({cfg.max_file_mb:g} MB); "
                "split the file or raise --max-file-mb")
    return None


@dataclass
class _Batch:
    """Where the documents of one batch came from, for when their results come back."""

    entry: FileEntry
    state: FileState
    keys: list[str]


def _read_file(source: Source, readers: dict, run: Run, workers: Workers) -> Iterator[tuple[_Batch, list]]:
    """Read one file in batches of documents; any failure becomes the file's reason and the run goes on."""
    entry = FileEntry(source.shown, "read")
    state = FileState(0, 0, "")
    notes = FileNotes()
    batch: list[Document] = []
    try:
        reason = _skip_reason(source, readers, run.cfg)
        if reason:
            entry.status, entry.reason = "skipped", reason
            run.report.files.append(entry)
            return
        stat = source.path.stat()
        state.size, state.mtime_ns, state.sha256 = stat.st_size, stat.st_mtime_ns, content_hash(source.path)
        for document in readers[source.path.suffix.lower()](source.path, source.shown, run.cfg, notes):
            batch.append(document)
            entry.documents += 1
            if len(batch) == _BATCH:
                yield from workers.submit(batch, _Batch(entry, state, _keys(source, entry.documents, batch)))
                batch = []
    except ReadError as exc:
        entry.reason = str(exc)
    except OSError as exc:
        entry.reason = f"cannot read the file ({exc.strerror or exc}); check that it exists and is readable"
    except (UnicodeError, ValueError, LookupError, RuntimeError, AttributeError, TypeError) as exc:
        # A damaged file can break a third-party parser in many ways; the other files still get read.
        entry.reason = f"could not parse the file ({type(exc).__name__}: {exc})"
    if batch:
        yield from workers.submit(batch, _Batch(entry, state, _keys(source, entry.documents, batch)))
    entry.notes = notes.as_list()
    state.documents = entry.documents
    run.report.files.append(entry)
    if entry.reason:
        entry.status = "partial" if entry.documents else "failed"
    else:
        run.manifest.files[source.shown] = state  # a failed or partial file is not recorded: the next run retries it


def _keys(source: Source, last: int, batch: list[Document]) -> list[str]:
    return [f"{source.shown}#{n}" for n in range(last - len(batch) + 1, last + 1)]


def _absorb(batch: _Batch, results: list[Processed], run: Run) -> None:
    """Count, deduplicate and write the processed documents of one batch, in reading order."""
    report, entry, state = run.report, batch.entry, batch.state
    for key, processed in zip(batch.keys, results):
        prepared, document = processed.prepared, processed.prepared.document
        report.boilerplate_lines_removed += prepared.boilerplate_lines
        if prepared.dropped_by:
            report.drops[prepared.dropped_by] += 1
            continue
        where = {"path": document.path, "position": document.position}
        if run.dedup is not None:
            duplicate = run.dedup.check(key, prepared.exact, prepared.signature)
            if duplicate is not None:
                kept_where = run.places.get(duplicate.kept) or {"path": duplicate.kept.rsplit("#", 1)[0]}
                report.duplicate(key, where, duplicate, kept_where)
                if kept_where["path"] not in state.dup_of:
                    state.dup_of.append(kept_where["path"])
                continue
            run.places[key] = where
        for record in processed.records:
            run.out_handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            state.chunks.append(record["id"])
        entry.kept += 1
        entry.chunks += len(processed.records)
        state.docs.append(key)
        report.chunks_total += len(processed.records)
        report.pii.update(processed.pii)
        report.languages[document.meta.get("language") or "unknown"] += 1
