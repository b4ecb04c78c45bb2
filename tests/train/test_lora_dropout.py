"""LoRA dropout drawn from 16 random bits per element: same distribution, scale and gradient as nn.Dropout."""

import pytest
import torch

from annotune.config import TrainConfig
from annotune.train.model_setup import LoraDropout, keep_mask, make_trainable


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_mask_keeps_one_minus_p_of_the_elements(p):
    torch.manual_seed(0)
    keep = keep_mask((1000, 1000), p)
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    # binomial standard deviation of the share over 1e6 elements is at most 0.0005
    assert keep.float().mean().item() == pytest.approx(1 - p, abs=0.003)
    # the four 16-bit lanes of each 64-bit draw are independent: every lane keeps the same share
    lanes = keep.flatten().view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full((4,), 1 - p), atol=0.006)


def test_odd_sizes_and_empty_inputs():
    torch.manual_seed(0)
    assert keep_mask((3, 5, 7), 0.1).shape == (3, 5, 7)
    assert keep_mask((0, 576), 0.1).shape == (0, 576)


def test_dropout_scales_what_it_keeps_zeroes_the_rest_and_backward_uses_the_same_mask():
    p = 0.25
    x = (torch.rand(64, 96) + 0.5).requires_grad_(True)  # no zeros of its own
    drop = LoraDropout(p).train()
    torch.manual_seed(3)
    out = drop(x)
    kept = out != 0
    assert 0.7 < kept.float().mean().item() < 0.8
    assert torch.allclose(out[kept], x.detach()[kept] / (1 - p))
    out.sum().backward()
    assert torch.equal(x.grad, kept.float() / (1 - p))
    torch.manual_seed(3)
    assert torch.equal(drop(x.detach()), out.detach())  # the seed decides the mask
    assert not torch.equal(drop(x.detach()), out.detach())  # and the generator moves on


def test_eval_mode_and_p_zero_pass_the_input_through():
    x = torch.randn(8, 16)
    assert LoraDropout(0.3).eval()(x) is x
    assert LoraDropout(0.0).train()(x) is x


def test_make_trainable_puts_it_on_every_adapter_input(tiny):
    from annotune.models.loading import load_model, resolve_model

    model = make_trainable(load_model(resolve_model(str(tiny))), TrainConfig(lora_dropout=0.1))
    drops = [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
             for d in m.lora_dropout.values()]
    assert drops and all(type(d) is LoraDropout and d.p == 0.1 for d in drops)
    off = make_trainable(load_model(resolve_model(str(tiny))), TrainConfig(lora_dropout=0.0))
    assert not any(isinstance(m, LoraDropout) for m in off.modules())
    model.train()
    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
