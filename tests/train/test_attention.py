"""Per-conversation attention for packed rows: the same logits and gradients as SDPA's block-diagonal mask."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotune.conversation import Conversation, Message
from annotune.models.templates import encode, ensure_chat_template
from annotune.train import attention, batching


def _packed(tokenizer, lengths=(1, 4, 2, 7)):
    convs = [Conversation([Message("user", f"question {i} " * n), Message("assistant", f"answer {i} " * (n + 1))])
             for i, n in enumerate(lengths)]
    return batching.pack([encode(tokenizer, c) for c in convs])


def _logits_and_grads(model, batch, segments):
    model.zero_grad()
    kwargs = {"packed_segments": batch.segments} if segments else {}
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False, **kwargs).logits
    picked = logits.flatten(0, 1)[batch.keep]
    F.cross_entropy(picked, batch.targets).backward()
    return picked.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture
def grid_calls(monkeypatch):
    """How many attention calls took the grid path (the others fell back to SDPA's mask)."""
    calls = []
    real = attention._grid_attention
    monkeypatch.setattr(attention, "_grid_attention", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox"])
def test_segment_attention_matches_the_masked_packed_row(lively_models, arch, grid_calls):
    tokenizer = AutoTokenizer.from_pretrained(lively_models[arch])
    ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(lively_models[arch])
    batch = _packed(tokenizer)
    assert batch.segments.count == 4 and batch.segments.slots.numel() == batch.tokens
    masked_logits, masked_grads = _logits_and_grads(model, batch, segments=False)
    assert attention.switch_on(model) and model.config._attn_implementation == attention.NAME
    logits, grads = _logits_and_grads(model, batch, segments=True)
    assert len(grid_calls) == model.config.num_hidden_layers  # every layer took the grid, none fell back
    torch.testing.assert_close(logits, masked_logits, rtol=1e-4, atol=1e-4)
    assert grads.keys() == masked_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], masked_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    # Without segments the switched model is SDPA with transformers' own mask: packed rows stay apart
    fallback, _ = _logits_and_grads(model, batch, segments=False)
    assert len(grid_calls) == model.config.num_hidden_layers
    torch.testing.assert_close(fallback, masked_logits, rtol=0, atol=0)
    attention.switch_off(model)
    assert model.config._attn_implementation == "sdpa"


def test_the_grid_uses_the_fused_kernel_above_its_limit(lively_models, monkeypatch, grid_calls):
    """The memory-saving path (for long conversations) gives the same logits and gradients as the unfused one."""
    tokenizer = AutoTokenizer.from_pretrained(lively_models["llama"])
    ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(lively_models["llama"])
    attention.switch_on(model)
    batch = _packed(tokenizer)
    kernels = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    real_math = torch.ops.aten._scaled_dot_product_attention_math
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: kernels.append("default") or real_sdpa(*a, **k))
    monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_attention_math",
                        lambda *a, **k: kernels.append("math") or real_math(*a, **k))
    unfused, unfused_grads = _logits_and_grads(model, batch, segments=True)
    monkeypatch.setattr(attention, "UNFUSED_LIMIT", 0)
    fused, fused_grads = _logits_and_grads(model, batch, segments=True)
    assert kernels == ["math"] * 2 + ["default"] * 2  # 2 layers: the unfused kernel, then SDPA's own choice
    assert len(grid_calls) == 4
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-4)
    for name in unfused_grads:
        torch.testing.assert_close(fused_grads[name], unfused_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_row_with_one_long_conversation_goes_through_the_mask(lively_models, grid_calls):
    """count x longest^2 over row^2: one long chat among short ones is cheaper with the mask; same logits."""
    tokenizer = AutoTokenizer.from_pretrained(lively_models["llama"])
    ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(lively_models["llama"])
    batch = _packed(tokenizer, lengths=(40, 1, 1, 1, 1, 1, 1, 1))
    assert batch.segments.count * batch.segments.width**2 >= batch.tokens**2
    masked, _ = _logits_and_grads(model, batch, segments=False)
    attention.switch_on(model)
    logits, _ = _logits_and_grads(model, batch, segments=True)
    assert grid_calls == []
    torch.testing.assert_close(logits, masked, rtol=0, atol=0)


def test_lora_training_on_cpu_takes_the_grid(tiny, chats, tmp_path, grid_calls):
    """The real call path: a LoRA model under PEFT, logits_to_keep, the training loop's micro-batches."""
    from annotune.config import TrainConfig
    from annotune.train import sft

    seen = {}
    real_train = sft._train
    sft_loop = lambda loop: seen.update(on=loop.segment_attention) or real_train(loop)  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sft, "_train", sft_loop)
        sft.train(TrainConfig(data=str(chats), model=str(tiny), out=str(tmp_path / "run"), epochs=1, batch_size=4,
                              progress=False, lora_r=4, lora_alpha=8, replay=0, val_size=0))
    # 10 training chats at batch 4: 3 steps of 2 layers, each on the grid (the tiny model passes the
    # output_* flags through to attention, which must not send a call back to the mask)
    assert seen["on"] is True and len(grid_calls) == 3 * 2


def test_a_model_not_on_sdpa_is_left_alone(lively_models):
    model = AutoModelForCausalLM.from_pretrained(lively_models["llama"], attn_implementation="eager")
    assert attention.switch_on(model) is False and model.config._attn_implementation == "eager"


def test_segments_place_each_token_in_its_conversations_row():
    seg = attention.Segments.of([2, 3, 1])
    assert (seg.count, seg.width) == (3, 3)
    assert seg.slots.tolist() == [0, 1, 3, 4, 5, 6]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_unfused_kernel_computes_as_sdpa_does_under_autocast(dtype):
    """Called directly, the math kernel gives SDPA's own results to the bit, also under bf16 autocast, where
    SDPA casts its inputs once and runs the kernel with autocast off (scores and softmax in fp32)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, heads, 20, 16, dtype=dtype, requires_grad=True) for heads in (6, 2, 2))
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            with sdpa_kernel(SDPBackend.MATH):
                expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            got = attention._unfused(q, k, v, 0.0, None, True)
        assert got.dtype == expected.dtype
        assert torch.equal(got, expected)
        for a, b in zip(torch.autograd.grad(expected.float().square().sum(), (q, k, v)),
                        torch.autograd.grad(got.float().square().sum(), (q, k, v))):
            assert torch.equal(a, b)
