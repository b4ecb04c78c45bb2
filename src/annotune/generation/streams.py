"""How callers receive a job's events: blocking iteration (:class:`TextStream`), asyncio (:class:`AsyncEvents`),
and the collection of many results for :meth:`annotune.generation.engine.Engine.generate`. Leaving a stream early
cancels its job."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotune.generation.engine import GenerationResult, Job, Sink


class TextStream:
    """The text of one answer, piece by piece; ``result`` once it is done. Closing it early cancels the job."""

    def __init__(self, job: Job, events: queue.Queue):
        self.job, self._events = job, events
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                kind, value = self._events.get()
                if kind == "error":
                    raise value
                if kind == "done":
                    self.result = value
                    return
                yield value
        finally:
            self.job.cancel()

    def close(self) -> None:
        self.job.cancel()


class AsyncEvents:
    """("text", piece) ... then ("done", result) of one job, in an event loop. Leaving early cancels the job."""

    def __init__(self, job: Job, events: asyncio.Queue):
        self.job, self._events = job, events

    async def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        try:
            while True:
                kind, value = await self._events.get()
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "done":
                    return
        finally:
            self.job.cancel()

    def cancel(self) -> None:
        self.job.cancel()


def collect(finished: queue.Queue, index: int) -> Sink:
    def sink(kind: str, value: Any) -> None:
        if kind in ("done", "error"):
            finished.put((index, kind, value))
    return sink


def drain(finished: queue.Queue, results: list, on_result, block: bool) -> None:
    while True:
        try:
            index, kind, value = finished.get(block=block)
        except queue.Empty:
            return
        if kind == "error":
            raise value
        results[index] = value
        if on_result:
            on_result(index, value)
        block = False
