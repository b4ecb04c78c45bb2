"""Per-document work in worker processes, in order, with a bounded number of batches in flight.

``multiprocessing.Pool.imap`` would read its whole input ahead of the workers; submitting batch by batch
and waiting for the oldest once ``depth`` are pending keeps memory flat however large the input is.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

from annotune.ingest.config import IngestConfig
from annotune.ingest.document import Document
from annotune.ingest.steps import Processed, process

_worker_cfg: IngestConfig | None = None


def _init_worker(cfg: IngestConfig) -> None:
    global _worker_cfg
    _worker_cfg = cfg


def _process_batch(documents: list[Document]) -> list[Processed]:
    return [process(document, _worker_cfg) for document in documents]


def worker_count(requested: int) -> int:
    return requested if requested > 0 else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                else os.cpu_count() or 1)


class Workers:
    """Submit batches of documents with a context; get back (context, results) in submission order."""

    def __init__(self, cfg: IngestConfig, workers: int, depth_per_worker: int = 4) -> None:
        self.cfg = cfg
        self.workers = worker_count(workers)
        self.depth = self.workers * depth_per_worker
        self.pending: deque[tuple[Any, Any]] = deque()
        self.pool = None

    def _start(self):
        methods = multiprocessing.get_all_start_methods()
        # fork shares the already imported libraries with the workers; spawn re-imports them (seconds).
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        return context.Pool(self.workers, initializer=_init_worker, initargs=(self.cfg,))

    def submit(self, batch: list[Document], context: Any) -> Iterator[tuple[Any, list[Processed]]]:
        if self.workers == 1:
            yield context, [process(document, self.cfg) for document in batch]
            return
        if self.pool is None:
            self.pool = self._start()
        self.pending.append((context, self.pool.apply_async(_process_batch, (batch,))))
        while len(self.pending) > self.depth:
            yield self._oldest()

    def drain(self) -> Iterator[tuple[Any, list[Processed]]]:
        while self.pending:
            yield self._oldest()

    def _oldest(self) -> tuple[Any, list[Processed]]:
        context, result = self.pending.popleft()
        return context, result.get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
