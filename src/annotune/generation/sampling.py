"""Choosing the next token of each row: greedy at temperature 0, else temperature and nucleus (top-p) sampling
with the row's own random generator, so one request's seed gives the same answer whatever shares its batch.

The nucleus is looked for among the row's most likely tokens first (``NUCLEUS_FIRST``, widened until their mass
reaches ``top_p``) rather than by sorting the whole vocabulary: the same set of tokens, drawn from in the same
order, at a fraction of the cost (sorting a 49,152-token row and drawing from all of it took about 4 ms on a 2-core
CPU, more than a decode step of the embedded model's whole batch; docs/benchmarks.md)."""

from __future__ import annotations

import torch

from annotune.generation.config import GenerationConfig

NUCLEUS_FIRST = 256  # candidates looked at first for the nucleus; 4x more each time their mass falls short


def sample(logits: torch.Tensor, configs: list[GenerationConfig], generators: list[torch.Generator | None]) -> list[int]:
    """One token id per row of ``logits`` [rows, vocab] (float32)."""
    chosen = logits.argmax(dim=-1).tolist()
    for row, (cfg, generator) in enumerate(zip(configs, generators)):
        if cfg.temperature > 0:
            chosen[row] = _sample_row(logits[row], cfg.temperature, cfg.top_p, generator)
    return chosen


def _sample_row(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=generator))
    ordered, order = nucleus(probs, top_p)
    choice = torch.multinomial(ordered / ordered.sum(), 1, generator=generator)
    return int(order[choice])


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The nucleus of ``probs`` [vocab], most likely first, and its token ids: each token whose more likely ones
    hold less than ``top_p`` between them, the smallest set that reaches it. Looked for among the most likely
    ``NUCLEUS_FIRST``, 4 times more while their mass falls short of ``top_p``."""
    k = min(NUCLEUS_FIRST, probs.numel())
    while True:
        ordered, order = probs.topk(k)
        if k == probs.numel() or float(ordered.sum()) >= top_p:
            break
        k = min(4 * k, probs.numel())
    kept = int(((ordered.cumsum(-1) - ordered) < top_p).sum())
    return ordered[:kept], order[:kept]
