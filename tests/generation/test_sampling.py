"""Nucleus sampling: the tokens it draws from are exactly the full sort's nucleus, found among the top tokens."""

from __future__ import annotations

import pytest
import torch

from annotune.generation import sampling


def _sorted_nucleus(probs: torch.Tensor, top_p: float) -> set[int]:
    ordered, order = probs.sort(descending=True)
    return set(order[(ordered.cumsum(-1) - ordered) < top_p].tolist())


@pytest.mark.parametrize("spread", [8.0, 1.0, 0.05])  # peaked, broad, nearly flat (needs most of the vocabulary)
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.99])
def test_the_nucleus_is_the_full_sorts(spread, top_p):
    probs = torch.softmax(torch.randn(20_000, generator=torch.Generator().manual_seed(3)) * spread, dim=-1)
    ordered, order = sampling.nucleus(probs, top_p)
    assert set(order.tolist()) == _sorted_nucleus(probs, top_p)
    assert torch.equal(ordered, probs[order]) and bool((ordered[:-1] >= ordered[1:]).all())


def test_draws_stay_in_the_nucleus_and_follow_its_weights():
    logits = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5] + [-5.0] * 1000)
    generator = torch.Generator().manual_seed(1)
    draws = torch.tensor([sampling._sample_row(logits, 1.0, 0.8, generator) for _ in range(4000)])
    probs = torch.softmax(logits, -1)
    nucleus = sorted(_sorted_nucleus(probs, 0.8))
    assert set(draws.tolist()) == set(nucleus)
    expected = probs[nucleus] / probs[nucleus].sum()
    observed = torch.bincount(draws, minlength=len(logits))[nucleus].float() / len(draws)
    assert torch.allclose(observed, expected, atol=0.03)
