"""The engine's running batch: the rows generating together and the model's state for them.

Every row is left-padded to one width: its key/value cache columns, its attention mask (0 on padding), its next
position and its last token. Rows join after their prompts are prefilled (:meth:`Batch.add`) and leave the step
they finish (:meth:`Batch.keep`); the scheduler is in engine.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F


class Batch:
    def __init__(self):
        self.clear()

    def clear(self) -> None:
        """No rows."""
        self.rows: list[Any] = []  # the engine's jobs, one per row
        self.cache = None  # transformers' DynamicCache, [rows, heads, width, dim] per layer
        self.mask: torch.Tensor | None = None  # [rows, width]
        self.positions: torch.Tensor | None = None  # [rows]: the next token's position
        self.last: torch.Tensor | None = None  # [rows]: the last token, the next step's input

    def add(self, jobs: list, cache, mask: torch.Tensor, positions: torch.Tensor, pad: int) -> None:
        """Add prefilled rows: both sides left-padded to one width, then stacked. Their last tokens are ``pad``
        until the engine samples them."""
        last = torch.full((len(jobs),), pad, dtype=torch.long, device=mask.device)
        if self.cache is None:
            self.rows, self.cache, self.mask, self.positions, self.last = list(jobs), cache, mask, positions, last
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)),
                               F.pad(mask, (width - mask.shape[1], 0))])
        self.positions = torch.cat([self.positions, positions])
        self.last = torch.cat([self.last, last])
        self.rows.extend(jobs)

    def step_inputs(self) -> dict:
        """The next decode step's inputs (each row's last token); the mask and positions move on by that token."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        inputs = {"input_ids": self.last[:, None], "attention_mask": self.mask,
                  "position_ids": self.positions[:, None]}
        self.positions = self.positions + 1
        return inputs

    def keep(self, indices: list[int]) -> None:
        """Keep only the rows ``indices``, and drop cache columns that are padding in every remaining row."""
        if not indices:
            self.clear()
            return
        self.rows = [self.rows[i] for i in indices]
        index = torch.tensor(indices, device=self.mask.device)
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        start = int((self.mask.sum(0) > 0).nonzero()[0])
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, start:], layer.values[index, :, start:]


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """[batch, heads, length, dim] padded with zeros on the left of the length axis to ``width``."""
    return F.pad(tensor, (0, 0, width - tensor.shape[2], 0))


def length_groups(indices: Iterable[int], lengths: list[int], budget: int) -> Iterator[list[int]]:
    """``indices``, shortest first, in groups that stay within ``budget`` tokens each when padded to their
    longest (a longer one alone): prompts prefilled together, conversations scored together."""
    group: list[int] = []
    for i in sorted(indices, key=lambda i: lengths[i]):
        if group and lengths[i] * (len(group) + 1) > budget:
            yield group
            group = []
        group.append(i)
    if group:
        yield group
