"""The kept prompt starts: which start a prefill reuses, computes or skips, and the bounds on what is kept."""

from __future__ import annotations

import torch

from annotune.generation import prefixes


def _compute(calls: list):
    def compute(known, at, tokens):
        calls.append((at, len(tokens)))
        return [(torch.zeros(1, 1, len(tokens), 4), torch.zeros(1, 1, len(tokens), 4))]
    return compute


PREAMBLE = list(range(100, 140))  # 40 tokens


def test_a_start_is_computed_once_extended_later_and_never_for_a_prompt_alone():
    starts, calls = prefixes.SharedStarts(), []
    assert starts.start([None], [PREAMBLE + [1, 2]], _compute(calls)) is None  # alone, nothing before it
    tokens, _ = starts.start([None], [PREAMBLE + [3, 4]], _compute(calls))  # shares the preamble with the last one
    assert list(tokens) == PREAMBLE and calls == [(0, 40)]
    group = [PREAMBLE + [5, 6, 7], PREAMBLE + [5, 6, 8]]
    tokens, _ = starts.start([None, None], group, _compute(calls))
    assert list(tokens) == PREAMBLE and len(calls) == 1  # the last prompt shares only the preamble: the kept one
    tokens, _ = starts.start([None, None], group, _compute(calls))
    assert list(tokens) == PREAMBLE + [5, 6] and calls[-1] == (40, 42)  # now all share more: the preamble extended
    tokens, _ = starts.start([None], [PREAMBLE + [9]], _compute(calls))
    assert list(tokens) == PREAMBLE and len(calls) == 2  # the kept preamble, not computed again


def test_short_shared_starts_and_mixed_adapters_get_none():
    starts, calls = prefixes.SharedStarts(), []
    short = list(range(prefixes.SHARED_PREFIX_MIN - 1))
    assert starts.start([None, None], [short + [1], short + [2]], _compute(calls)) is None
    assert starts.start(["a", None], [PREAMBLE + [1], PREAMBLE + [2]], _compute(calls)) is None
    assert calls == []


def test_what_is_kept_stays_within_its_count_and_memory_budget(monkeypatch):
    starts, calls = prefixes.SharedStarts(), []
    for i in range(prefixes.SHARED_PREFIXES_KEPT + 3):
        lead = [1000 + i] + PREAMBLE
        assert starts.start([None], [lead + [1]], _compute(calls)) is None  # nothing shared with the last one
        assert starts.start([None], [lead + [2]], _compute(calls)) is not None
    assert len(starts.kept) == prefixes.SHARED_PREFIXES_KEPT
    assert starts.kept[-1][0] == 1000 + prefixes.SHARED_PREFIXES_KEPT + 2  # the least recently used went first
    one = 2 * 41 * 4 * 4  # bytes of one kept start above
    monkeypatch.setattr(prefixes, "SHARED_PREFIXES_BYTES", 3 * one)
    lead = [2000] + PREAMBLE
    starts.start([None], [lead + [1]], _compute(calls))
    assert starts.start([None], [lead + [2]], _compute(calls)) is not None
    assert len(starts.kept) == 3 and starts.kept[-1][0] == 2000
