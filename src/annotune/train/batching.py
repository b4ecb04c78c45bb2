"""Micro-batches: several conversations packed into one row with no padding.

Each conversation keeps its own position ids (restarting at 0), from which transformers builds a block-diagonal
causal mask, so packed conversations never attend to each other. Only positions that carry a target are projected
onto the vocabulary, which on a small model saves a large share of the compute.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from annotune.generation.prefixes import common_length
from annotune.models.templates import IGNORE, Encoded
from annotune.train.attention import Segments


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [rows, length]
    position_ids: torch.Tensor  # [rows, length]
    attention_mask: torch.Tensor | None  # [rows, length] when padded, None when packed
    keep: torch.Tensor  # flat indices into rows*length of positions that carry a target
    targets: torch.Tensor  # [len(keep)] target ids
    tokens: int  # real (non-padding) tokens, a shared start counted once
    segments: Segments | None = None  # packed: where each conversation lies in the row (train/attention.py)

    @property
    def supervised(self) -> int:
        return int(self.targets.numel())

    def to(self, device) -> "MicroBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return MicroBatch(move(self.input_ids), move(self.position_ids), move(self.attention_mask),
                          move(self.keep), move(self.targets), self.tokens,
                          None if self.segments is None else self.segments.to(device))


def pack(examples: list[Encoded], share_start: bool = False) -> MicroBatch:
    """Concatenate ``examples`` into one row with per-example position ids.

    With ``share_start`` (rows that attend per conversation, train/attention.py) the examples are put in token
    order, and the tokens each begins with in common with the one before it, up to its first target, are in the
    row only once: chats open with their template and system prompt, often the same, and the decoder's layers then
    compute those once per row instead of once per chat. The logits and gradients are those of the row without
    sharing, in another order.
    """
    if share_start:
        examples = sorted(examples, key=lambda ex: ex.input_ids)
        shared = [0] + [shared_start(a, b) for a, b in zip(examples, examples[1:])]
    else:
        shared = [0] * len(examples)
    ids, positions, targets = [], [], []
    for ex, common in zip(examples, shared):
        ids.extend(ex.input_ids[common:])
        positions.extend(range(common, len(ex.input_ids)))
        targets.extend(ex.targets[common:])
    target_tensor = torch.tensor(targets)
    keep = (target_tensor != IGNORE).nonzero().flatten()
    return MicroBatch(torch.tensor([ids]), torch.tensor([positions]), None, keep, target_tensor[keep], len(ids),
                      Segments.of([len(ex.input_ids) for ex in examples], shared))


def shared_start(a: Encoded, b: Encoded) -> int:
    """How many leading tokens ``a`` and ``b`` have in common before either's first target, each keeping at least
    one token of its own."""
    limit = min(len(a.input_ids), len(b.input_ids)) - 1
    for ex in (a, b):
        limit = min(limit, next((t for t, target in enumerate(ex.targets) if target != IGNORE), limit))
    return common_length(a.input_ids, [b.input_ids], limit)


def pad(examples: list[Encoded], pad_id: int) -> MicroBatch:
    """One row per example, right-padded: for architectures whose attention ignores packed position ids."""
    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        mask[row, :n] = 1
        targets[row, :n] = torch.tensor(ex.targets)
    flat = targets.flatten()
    keep = (flat != IGNORE).nonzero().flatten()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return MicroBatch(ids, positions, mask, keep, flat[keep], int(mask.sum()))


def epoch_batches(examples: list[Encoded], batch_size: int, seed: int, epoch: int,
                  shuffle: bool = True) -> list[list[Encoded]]:
    """The epoch's groups of ``batch_size`` examples, in an order fixed by (seed, epoch) for exact resumes."""
    order = list(range(len(examples)))
    if shuffle:
        random.Random(seed * 100_003 + epoch).shuffle(order)
    return [[examples[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]


def step_slots(groups: list, step: int, grad_accum: int, world: int, rank: int) -> list[tuple[int, float]]:
    """(group index, weight) for this rank's micro-batches in optimizer step ``step`` of an epoch.

    Every rank runs ``grad_accum`` micro-batches per step so DDP's gradient all-reduce never waits on a rank that
    ran out of data; a rank past the end repeats the step's first group with weight 0.
    """
    first = step * grad_accum * world
    last = min(first + grad_accum * world, len(groups))
    slots = []
    for k in range(grad_accum):
        index = first + k * world + rank
        slots.append((index, 1.0) if index < last else (first, 0.0))
    return slots


def steps_per_epoch(n_groups: int, grad_accum: int, world: int) -> int:
    return -(-n_groups // (grad_accum * world))
