"""The generation engine: continuous batching over one model's KV cache, on a thread of its own.

Requests join the running batch as soon as there is room (their prompts are prefilled together and their cache
rows merged in, left-padded to the batch's width: generation/batch.py) and leave it the step they finish, so a
short answer never waits for a long one. Each request has its own sampling settings, stop strings and seed.
Several LoRA runs on one base share the base weights: each row of a batch names its adapter (PEFT's mixed-adapter
forward).

Callers use :meth:`Engine.generate` (many answers, blocking), :meth:`Engine.stream` (text pieces, blocking) or
:meth:`Engine.astream` (events, asyncio); all three submit :class:`Job`s to the same scheduler. Closing a stream
cancels its job: the row leaves the batch at the next step.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from annotune.errors import AnnotuneError
from annotune.generation.batch import Batch, length_groups
from annotune.generation.config import GenerationConfig
from annotune.generation.prefixes import SharedStarts
from annotune.generation.streams import AsyncEvents, TextStream, collect, drain
from annotune.generation.text import TextAssembler

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch
SCORE_TOKENS = 1024  # conversations scored together (padded): their logits over the vocabulary are held at once


class ContextLengthError(AnnotuneError):
    """The prompt plus the answer's token budget does not fit the model's context."""

    index: int = 0  # which conversation, in :meth:`Engine.generate`


class EngineBusy(AnnotuneError):
    """The waiting queue is full; try again shortly."""


class UnknownModel(AnnotuneError):
    """No served model has that name."""


@dataclass
class ServedModel:
    """One name the engine answers to: a run (its adapter, template, stop tokens, system prompt) or a base model."""

    name: str
    tokenizer: Any
    stop_ids: frozenset[int]
    context: int  # most tokens (prompt + answer) the model can attend over
    adapter: str | None = None  # adapter name inside the engine's model; None: the weights as loaded
    system: str | None = None  # the training chats' shared system prompt, used when a request gives none
    parent: str | None = None  # the base model's name, for listings
    router: Any = None  # a run's routing.Router: requests unlike its training questions go to the base weights
    untuned: str | None = None  # with a router: the adapter that gives the base weights' answer (None: no adapter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # fast tokenizers are not re-entrant

    def with_system(self, messages: list[dict]) -> list[dict]:
        if self.system and (not messages or messages[0]["role"] != "system"):
            return [{"role": "system", "content": self.system}, *messages]
        return messages

    def prompt_ids(self, messages: list[dict]) -> Prompt:
        from annotune.generation.routing import route_ids
        from annotune.models.templates import prompt_ids

        with self.lock:
            full = self.with_system(messages)
            prompt = Prompt(prompt_ids(self.tokenizer, full))
            if self.router is not None:
                prompt.route = route_ids(self.tokenizer, messages)
                own = messages[1:] if messages and messages[0] == {"role": "system", "content": self.system} else None
                if full is not messages or own is not None:  # the run's own system prompt, added by the engine or
                    # sent back by the chat page: the base model goes without it
                    prompt.base = prompt_ids(self.tokenizer, messages if own is None else own)
        return prompt


class Prompt(list):
    """A prompt's token ids. With a router: ``route``, the ids of its user text, which the router reads, and
    ``base``, the prompt without the run's own system prompt where one was added, for the base model."""

    route: list[int] | None = None
    base: list[int] | None = None


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]  # every generated id, the stop token included
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop (stop token or string) | length (max tokens) | cancelled
    model: str
    seconds: float = 0.0
    first_token_seconds: float | None = None
    route: str | None = None  # with a router: "tuned" (the adapter answered) or "base"


Sink = Callable[[str, Any], None]  # (kind, value): ("text", str) | ("done", GenerationResult) | ("error", exc)
_ids = itertools.count(1)


class Job:
    """One request inside the engine. Its events go to ``sink`` from the engine's thread."""

    def __init__(self, served: ServedModel, prompt: list[int], cfg: GenerationConfig, sink: Sink):
        self.id = next(_ids)
        self.served, self.prompt, self.cfg, self.sink = served, prompt, cfg, sink
        seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        self.generator = torch.Generator().manual_seed(seed) if cfg.temperature > 0 else None
        self.text = TextAssembler(served.tokenizer, cfg.stop)
        self.cancelled = threading.Event()
        self.done = False
        self.reason: str | None = None  # how it finished
        self.started = time.perf_counter()
        self.first_token: float | None = None
        self.adapter = served.adapter  # the router may switch it off (Engine._route)
        self.route: str | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, kind: str, value: Any) -> None:
        """Hand an event to the caller; a caller that is gone (its event loop closed) cancels the job."""
        try:
            self.sink(kind, value)
        except RuntimeError:
            self.cancel()

    def finish(self, reason: str) -> None:
        with self.served.lock:
            tail = self.text.add(None, final=True)
        if tail:
            self.emit("text", tail)
        self.done, self.reason = True, reason
        now = time.perf_counter()
        self.emit("done", GenerationResult(
            self.text.text, list(self.text.ids), len(self.prompt), len(self.text.ids), reason, self.served.name,
            now - self.started, None if self.first_token is None else self.first_token - self.started, self.route))


class Engine:
    """Continuous batching for one loaded model and the names (runs, base) it serves."""

    def __init__(self, model, models: dict[str, ServedModel], device: str = "cpu", max_batch: int = 16,
                 max_waiting: int = 256, prefill_tokens: int = 2048):
        from annotune.train.model_setup import forward_parameters

        self.model, self.models, self.device = model, models, device
        self.max_batch, self.max_waiting, self.prefill_tokens = max_batch, max_waiting, prefill_tokens
        self._mixed = any(m.adapter or m.untuned for m in models.values())
        self._layers_on = True  # PEFT's adapter layers (see _adapters)
        params = forward_parameters(model)
        self._keep_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
        self._pad = next(iter(models.values())).tokenizer.pad_token_id or 0
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._model_lock = threading.Lock()  # the scheduler's steps and score() take turns on the model
        self._closing = False
        self._starts = SharedStarts()  # prompt starts computed once (see _prefill)
        self._batch = Batch()
        self._thread = threading.Thread(target=self._loop, name="annotune-engine", daemon=True)
        self._thread.start()

    # ---- submitting -------------------------------------------------------------------------------------------
    def served(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModel(f"no model named {name!r}; this engine serves: {', '.join(self.models)}") from None

    def prepare(self, name: str, messages: list[dict], cfg: GenerationConfig,
                budget_given: bool = True) -> tuple[ServedModel, list[int], GenerationConfig]:
        """The prompt's ids and the config to run with; refuses what cannot fit the context.

        With ``budget_given`` False the answer may use whatever the context leaves, up to ``cfg.max_new_tokens``.
        """
        served = self.served(name)
        prompt = served.prompt_ids(messages)
        room = served.context - len(prompt)
        if room < 1 or (budget_given and cfg.max_new_tokens > room):
            raise ContextLengthError(
                f"this model's context is {served.context} tokens; the prompt has {len(prompt)} and "
                f"{cfg.max_new_tokens} more were asked for the answer. Shorten the conversation or ask for fewer "
                "tokens")
        if cfg.max_new_tokens > room:
            cfg = cfg.model_copy(update={"max_new_tokens": room})
        return served, prompt, cfg

    def submit(self, served: ServedModel, prompt: list[int], cfg: GenerationConfig, sink: Sink,
               wait: bool = False) -> Job:
        """Queue a prepared request. Raises :class:`EngineBusy` when the queue is full, unless ``wait``."""
        job = Job(served, prompt, cfg, sink)
        with self._cond:
            while len(self._waiting) >= self.max_waiting:
                if not wait:
                    raise EngineBusy(f"{len(self._waiting)} requests are waiting; try again in a few seconds")
                self._cond.wait()
            if self._closing:
                raise EngineBusy("the engine is shutting down")
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    @property
    def load(self) -> tuple[int, int]:
        """(requests generating, requests waiting)."""
        return len(self._batch.rows), len(self._waiting)

    # ---- the three ways to use it -------------------------------------------------------------------------------
    def generate(self, name: str | list[str], conversations: list[list[dict]], cfg: GenerationConfig | None = None,
                 on_result: Callable[[int, GenerationResult], None] | None = None) -> list[GenerationResult]:
        """Answer every conversation (continuously batched); ``on_result(i, result)`` as each one finishes.

        ``name`` is the model for all of them, or a list naming each one's model (batched together)."""
        cfg = cfg or GenerationConfig()
        names = name if isinstance(name, list) else [name] * len(conversations)
        prepared = []
        for index, (model, msgs) in enumerate(zip(names, conversations)):  # every error before any work
            try:
                prepared.append(self.prepare(model, msgs, cfg))
            except ContextLengthError as exc:
                exc.index = index
                raise
        results: list[GenerationResult | None] = [None] * len(prepared)
        finished: queue.Queue = queue.Queue()
        jobs = []
        try:
            for i, (served, prompt, run_cfg) in enumerate(prepared):
                jobs.append(self.submit(served, prompt, run_cfg, collect(finished, i), wait=True))
                drain(finished, results, on_result, block=False)
            while any(r is None for r in results):
                drain(finished, results, on_result, block=True)
        finally:
            for job in jobs:
                job.cancel()  # a no-op for finished jobs; frees the batch if the caller was interrupted
        return results  # type: ignore[return-value]

    def stream(self, name: str, messages: list[dict], cfg: GenerationConfig | None = None) -> TextStream:
        served, prompt, run_cfg = self.prepare(name, messages, cfg or GenerationConfig())
        events: queue.Queue = queue.Queue()
        job = self.submit(served, prompt, run_cfg, lambda kind, value: events.put((kind, value)), wait=True)
        return TextStream(job, events)

    def astream(self, served: ServedModel, prompt: list[int], cfg: GenerationConfig) -> AsyncEvents:
        """Submit a prepared request now (EngineBusy is raised here) and return its events for asyncio."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = self.submit(served, prompt, cfg, lambda kind, value: loop.call_soon_threadsafe(
            events.put_nowait, (kind, value)))
        return AsyncEvents(job, events)

    def score(self, name: str, conversations: list) -> list[tuple[float, int]]:
        """(summed negative log-likelihood, token count) of each conversation's trained (assistant) tokens under
        model ``name``, with its chat template: how likely the model finds reference answers."""
        from annotune.generation.routing import route_ids
        from annotune.models.templates import IGNORE, encode

        served = self.served(name)
        with served.lock:
            encodings = [encode(served.tokenizer, conv) for conv in conversations]
            routes = [route_ids(served.tokenizer, conv.messages) if served.router is not None else None
                      for conv in conversations]
        judged = [i for i, route in enumerate(routes) if route is not None]
        out: list[tuple[float, int]] = [(0.0, 0)] * len(encodings)
        with self._model_lock, torch.inference_mode():
            # one pooled pass routes them all; a conversation without user text is the run's
            tuned = dict(zip(judged, self._tuned(served, [routes[i] for i in judged])))
            by_adapter: dict[str | None, list[int]] = {}
            for i in range(len(encodings)):
                by_adapter.setdefault(served.adapter if tuned.get(i, True) else served.untuned, []).append(i)
            lengths = [len(e.input_ids) for e in encodings]
            for adapter, indices in by_adapter.items():
                options = self._adapters([adapter])
                for group in length_groups(indices, lengths, SCORE_TOKENS):
                    # right-padded: every row's tokens keep the positions they have alone
                    width = max(lengths[i] for i in group)
                    ids = torch.tensor([encodings[i].input_ids + [self._pad] * (width - lengths[i]) for i in group],
                                       device=self.device)
                    mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in group],
                                        device=self.device)
                    logits = self.model(input_ids=ids, attention_mask=mask, **options).logits
                    for row, i in enumerate(group):
                        targets = torch.tensor(encodings[i].targets, device=self.device)
                        keep = targets != IGNORE
                        chosen = logits[row, :len(targets)][keep].float()
                        out[i] = (float(F.cross_entropy(chosen, targets[keep], reduction="sum")), int(keep.sum()))
        return out

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> None:
        """Finish what is in flight, then stop the scheduler thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ---- the scheduler ------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._batch.rows and not self._closing:
                    self._cond.wait()
                if self._closing and not self._waiting and not self._batch.rows:
                    return
                admitted = []
                while self._waiting and len(self._batch.rows) + len(admitted) < self.max_batch:
                    job = self._waiting.popleft()
                    if job.cancelled.is_set():
                        job.finish("cancelled")
                    else:
                        admitted.append(job)
                self._cond.notify_all()  # room in the queue for blocked submitters
            try:
                with self._model_lock, torch.inference_mode():
                    self._route(admitted)
                    for group in self._prefill_groups(admitted):
                        self._prefill(group)
                    if self._batch.rows:
                        self._decode()
            except BaseException as exc:  # noqa: BLE001 - handed to every affected caller, the engine stays up
                log.exception("generation failed")
                for job in {id(j): j for j in [*self._batch.rows, *admitted]}.values():
                    if not job.done:
                        job.done = True
                        job.emit("error", exc)
                self._batch.clear()

    def _route(self, jobs: list[Job]) -> None:
        """Each routed job's adapter: its run's, or none where the router finds the request unlike the run's
        training questions (generation/routing.py)."""
        for served in {id(j.served): j.served for j in jobs if j.served.router is not None}.values():
            mine = [j for j in jobs if j.served is served]
            routed = [j for j in mine if getattr(j.prompt, "route", None)]
            for job, tuned in zip(routed, self._tuned(served, [j.prompt.route for j in routed])):
                job.adapter, job.route = (served.adapter, "tuned") if tuned else (served.untuned, "base")
                if not tuned and job.prompt.base is not None:  # answered as the base model answers it
                    job.prompt = job.prompt.base
            for job in mine:
                if job.route is None:  # no user text to judge by: the run answers
                    job.route = "tuned"

    def _tuned(self, served: ServedModel, id_lists: list[list[int]]) -> list[bool]:
        from annotune.generation.routing import pooled

        if not id_lists:
            return []
        base = self._adapters([served.untuned])  # the router reads the base model's hidden states
        vectors = pooled(self.model, id_lists, served.router.layer, self._pad, self.device, base)
        return served.router.tuned(vectors)

    def _prefill_groups(self, jobs: list[Job]) -> Iterator[list[Job]]:
        """Prompts prefilled together, each group padded to its longest within the token budget."""
        for group in length_groups(range(len(jobs)), [len(job.prompt) for job in jobs], self.prefill_tokens):
            yield [jobs[i] for i in group]

    def _forward(self, jobs: list[Job], cache, **kwargs):
        kwargs[self._cache_arg] = cache
        kwargs.update(self._adapters([j.adapter for j in jobs]))
        return self.model(use_cache=True, **self._keep_kwargs, **kwargs).logits[:, -1, :].float()

    def _adapters(self, adapters: list[str | None]) -> dict:
        """The forward's adapter arguments for rows that use ``adapters`` (None: the weights as loaded). Rows that
        use no adapter run with PEFT's adapter layers switched off, and rows that all use one adapter take its
        plain forward: both faster than the mixed-batch forward, which is left for batches that mix."""
        if not self._mixed:
            return {}
        names = {a or BASE_ADAPTER for a in adapters}
        self._adapter_layers(names != {BASE_ADAPTER})
        if len(names) > 1:
            return {"adapter_names": [a or BASE_ADAPTER for a in adapters]}
        if names != {BASE_ADAPTER}:
            self.model.set_adapter(names.pop())
        return {}

    def _adapter_layers(self, on: bool) -> None:
        """Switch PEFT's adapter layers on or off, only when that changes (it walks every module)."""
        if on != self._layers_on:
            self.model.base_model.enable_adapter_layers() if on else self.model.base_model.disable_adapter_layers()
            self._layers_on = on

    def _prefill(self, jobs: list[Job]) -> None:
        """Prefill ``jobs``' prompts together, left-padded to one width. A leading part they share with each other
        and with the prompts before them (a few-shot preamble, a chat template's system prompt) is computed once
        and kept (generation/prefixes.py); each row then prefills only the rest, padded between the two parts."""
        from transformers import DynamicCache

        shared = self._starts.start([j.adapter for j in jobs], [j.prompt for j in jobs],
                                    lambda known, at, tokens: self._start_kv(jobs[0], known, at, tokens))
        head, cache = 0, DynamicCache()
        if shared:
            tokens, kv = shared
            head = len(tokens)
            cache = DynamicCache(ddp_cache_data=[(k.expand(len(jobs), -1, -1, -1), v.expand(len(jobs), -1, -1, -1))
                                                 for k, v in kv])
        tails = [j.prompt[head:] for j in jobs]
        width = max(map(len, tails))
        ids = torch.tensor([[self._pad] * (width - len(t)) + t for t in tails], device=self.device)
        mask = torch.tensor([[1] * head + [0] * (width - len(t)) + [1] * len(t) for t in tails], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(jobs, cache, input_ids=ids, attention_mask=mask, position_ids=positions[:, head:])
        self._batch.add(jobs, cache, mask, positions[:, -1] + 1, self._pad)
        self._advance(jobs, logits, first=True)

    def _start_kv(self, job: Job, known: list | None, at: int, tokens: tuple[int, ...]) -> list:
        """The keys and values [1, heads, tokens, dim] per layer of a prompt start, for ``job``'s adapter: from
        ``at`` on, after ``known``, those of its first ``at`` tokens (None: from the beginning)."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=known)
        self._forward([job], cache, input_ids=torch.tensor([tokens[at:]], device=self.device),
                      attention_mask=torch.ones(1, len(tokens), dtype=torch.long, device=self.device),
                      position_ids=torch.arange(at, len(tokens), device=self.device)[None])
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _decode(self) -> None:
        batch = self._batch
        logits = self._forward(batch.rows, batch.cache, **batch.step_inputs())
        self._advance(list(batch.rows), logits)

    def _advance(self, jobs: list[Job], logits: torch.Tensor, first: bool = False) -> None:
        """Sample one token per row, hand out its text, and drop the rows that are done."""
        from annotune.generation.sampling import sample

        tokens = sample(logits, [j.cfg for j in jobs], [j.generator for j in jobs])
        offset = len(self._batch.rows) - len(jobs) if first else 0  # prefilled rows were appended at the end
        keep = []
        for i, (job, token) in enumerate(zip(jobs, tokens)):
            reason = self._take(job, token)
            if reason is None:
                keep.append(offset + i)
                self._batch.last[offset + i] = token
            else:
                job.finish(reason)
        if first:
            keep = list(range(offset)) + keep
        if len(keep) < len(self._batch.rows):
            self._batch.keep(keep)

    def _take(self, job: Job, token: int) -> str | None:
        """Give ``token`` to ``job``; the finish reason if it ended the answer."""
        if job.first_token is None:
            job.first_token = time.perf_counter()
        if job.cancelled.is_set():
            return "cancelled"
        if token in job.served.stop_ids:
            job.text.ids.append(token)
            return "stop"
        with job.served.lock:
            piece = job.text.add(token)
        if piece:
            job.emit("text", piece)
        if job.text.stopped:
            return "stop"
        return "length" if len(job.text.ids) >= job.cfg.max_new_tokens else None
