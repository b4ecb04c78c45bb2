"""Prompt starts shared by many requests (a few-shot preamble, a chat template's system prompt), kept so that the
engine computes their keys and values once and prefills each request from where they end."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

# From this many shared tokens on, a start is kept: the last few such starts' keys and values (about 2.6 MB for a
# 115-token start of the embedded model in bf16), within a memory budget that a larger model's long starts would
# otherwise exceed (a 2,000-token start of a 7B model without grouped keys is about 1 GB).
SHARED_PREFIX_MIN = 16
SHARED_PREFIXES_KEPT = 8
SHARED_PREFIXES_BYTES = 256 * 2**20

# (keys and values of the kept start it extends, or None; that start's length; the tokens to compute) -> keys
# and values [1, heads, tokens, dim] per layer
Compute = Callable[[list | None, int, tuple[int, ...]], list]


class SharedStarts:
    """The starts kept per adapter, and the last prompt prefilled (a request alone in its prefill group shares its
    start with the requests before it)."""

    def __init__(self):
        self._kept: OrderedDict[tuple[str | None, tuple[int, ...]], list] = OrderedDict()
        self._last: list[int] | None = None

    @property
    def kept(self) -> list[tuple[int, ...]]:
        return [tokens for _, tokens in self._kept]

    def start(self, adapters: list[str | None], prompts: list[list[int]],
              compute: Compute) -> tuple[tuple[int, ...], list] | None:
        """The longest leading tokens, at least ``SHARED_PREFIX_MIN``, that every one of ``prompts`` and the last
        one before them start with (each keeping one token of its own), with their keys and values: kept ones
        where they serve, else computed once (extending the longest kept one they start with) and kept. None where
        there is none, or where the prompts use different adapters."""
        last, self._last = self._last, prompts[-1]
        adapter = adapters[0]
        if any(a != adapter for a in adapters):
            return None
        room = min(map(len, prompts)) - 1  # every prompt keeps at least one token of its own
        known = max((tokens for a, tokens in self._kept if a == adapter and len(tokens) <= room
                     and all(tuple(p[:len(tokens)]) == tokens for p in prompts)), key=len, default=())
        others = prompts[1:] + ([last] if last is not None else [])
        length = common_length(prompts[0], others, room) if others else 0
        if len(known) >= length or length < SHARED_PREFIX_MIN:
            if not known:
                return None
            self._kept.move_to_end((adapter, known))
            return known, self._kept[(adapter, known)]
        tokens = tuple(prompts[0][:length])
        kv = compute(self._kept.get((adapter, known)), len(known), tokens)
        self._kept[(adapter, tokens)] = kv
        while len(self._kept) > SHARED_PREFIXES_KEPT or sum(map(_bytes, self._kept.values())) > SHARED_PREFIXES_BYTES:
            self._kept.popitem(last=False)  # the least recently used; a start over the whole budget is used, not kept
        return tokens, kv


def _bytes(kv: list) -> int:
    return sum(t.numel() * t.element_size() for pair in kv for t in pair)


def common_length(first: list[int], others: list[list[int]], most: int) -> int:
    """How many leading tokens ``first`` shares with every one of ``others``, at most ``most``."""
    for n in range(most):
        if any(n >= len(o) or o[n] != first[n] for o in others):
            return n
    return max(most, 0)
