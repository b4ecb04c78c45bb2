"""Choosing the next token of each row: greedy at temperature 0, else temperature and nucleus (top-p) sampling
with the row's own random generator, so one request's seed gives the same answer whatever shares its batch."""

from __future__ import annotations

import torch

from annotune.generation.config import GenerationConfig


def sample(logits: torch.Tensor, configs: list[GenerationConfig], generators: list[torch.Generator | None]) -> list[int]:
    """One token id per row of ``logits`` [rows, vocab] (float32)."""
    chosen = logits.argmax(dim=-1).tolist()
    for row, (cfg, generator) in enumerate(zip(configs, generators)):
        if cfg.temperature > 0:
            chosen[row] = _sample_row(logits[row], cfg.temperature, cfg.top_p, generator)
    return chosen


def _sample_row(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        # Keep each token whose preceding mass is below top_p: the smallest set that reaches it.
        keep = (ordered.cumsum(-1) - ordered) < top_p
        ordered = ordered * keep
        choice = torch.multinomial(ordered / ordered.sum(), 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))
