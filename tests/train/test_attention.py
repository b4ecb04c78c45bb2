"""Per-conversation attention for packed rows: the same logits and gradients as SDPA's block-diagonal mask."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from annotune.conversation import Conversation, Message
from annotune.models.templates import IGNORE, Encoded, encode, ensure_chat_template
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


def _with_a_system_prompt(tokenizer, lengths=(1, 4, 2, 7)):
    system = "You answer questions about the Kestrune sync client, briefly and exactly. " * 2
    return [encode(tokenizer, Conversation([Message("system", system), Message("user", f"{i} question " * n),
                                            Message("assistant", f"answer {i} " * (n + 1))]))
            for i, n in enumerate(lengths)]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox"])
def test_a_start_shared_by_the_rows_conversations_is_computed_once_to_the_same_logits_and_gradients(
        lively_models, arch, grid_calls):
    tokenizer = AutoTokenizer.from_pretrained(lively_models[arch])
    ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(lively_models[arch])
    examples = _with_a_system_prompt(tokenizer)
    plain, shared = batching.pack(examples), batching.pack(examples, share_start=True)
    # the chats are put in token order; each holds the system prompt in common with the one before it
    assert shared.segments.shared >= 3 * 20 and shared.tokens == plain.tokens - shared.segments.shared
    assert sorted(shared.targets.tolist()) == sorted(plain.targets.tolist())
    order = sorted(range(len(examples)), key=lambda i: examples[i].input_ids)
    plain = batching.pack([examples[i] for i in order])  # the same order without sharing, for the comparison
    masked_logits, masked_grads = _logits_and_grads(model, plain, segments=False)
    assert attention.switch_on(model) and attention.shares_starts(model)
    logits, grads = _logits_and_grads(model, shared, segments=True)
    assert len(grid_calls) == model.config.num_hidden_layers
    torch.testing.assert_close(logits, masked_logits, rtol=1e-4, atol=1e-4)
    assert grads.keys() == masked_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], masked_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_shared_start_ends_before_the_first_target_and_leaves_each_conversation_a_token():
    a = Encoded([1, 2, 3, 4, 5], [IGNORE, IGNORE, IGNORE, 4, 5])
    b = Encoded([1, 2, 3, 9, 5], [IGNORE, IGNORE, IGNORE, IGNORE, 8])
    assert batching.shared_start(a, b) == 3
    assert batching.shared_start(a, Encoded([1, 2, 3, 4, 5], [IGNORE, 2, IGNORE, IGNORE, 5])) == 1  # a target
    assert batching.shared_start(Encoded([1, 2], [IGNORE, 2]), Encoded([1, 2], [IGNORE, 2])) == 1  # the same chat
    assert batching.shared_start(a, Encoded([7, 2, 3], [IGNORE] * 3)) == 0
    c = Encoded([1, 2, 8], [IGNORE, IGNORE, 8])
    row = batching.pack([b, c, a], share_start=True)  # in token order: a, b, c
    assert row.input_ids.tolist() == [[1, 2, 3, 4, 5, 9, 5, 8]]
    assert row.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 4, 2]]
    assert row.targets.tolist() == [4, 5, 8, 8]
    assert row.segments.source.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 5, 6, 0, 1, 7, 0, 0]
    assert batching.pack([b, c, a]).input_ids.numel() == 13


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

    seen, starts = {}, []
    real_train, real_pack = sft._train, batching.pack
    sft_loop = lambda loop: seen.update(on=loop.segment_attention, share=loop.share_start) or real_train(  # noqa: E731
        loop)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sft, "_train", sft_loop)
        mp.setattr(batching, "pack", lambda *a: (lambda row: starts.append(row.segments.shared) or row)(real_pack(*a)))
        sft.train(TrainConfig(data=str(chats), model=str(tiny), out=str(tmp_path / "run"), epochs=1, batch_size=4,
                              progress=False, lora_r=4, lora_alpha=8, replay=0, val_size=0))
    # 10 training chats at batch 4: 3 steps of 2 layers, each on the grid (the tiny model passes the
    # output_* flags through to attention, which must not send a call back to the mask)
    assert seen["on"] is True and len(grid_calls) == 3 * 2
    # the chats' common start ("<|im_start|>user" and its line break) is held once per row: by 3 of a row of 4
    # and 1 of the last row's 2 (at least 2 tokens each)
    assert seen["share"] is True and sorted(starts)[0] >= 2 and sorted(starts)[1:] >= [6, 6]


def test_a_model_not_on_sdpa_is_left_alone(lively_models):
    model = AutoModelForCausalLM.from_pretrained(lively_models["llama"], attn_implementation="eager")
    assert attention.switch_on(model) is False and model.config._attn_implementation == "eager"


def test_segments_place_each_token_in_its_conversations_row():
    seg = attention.Segments.of([2, 3, 1])
    assert (seg.count, seg.width) == (3, 3)
    assert seg.slots.tolist() == [0, 1, 3, 4, 5, 6]
    assert seg.source.tolist() == [0, 1, 0, 2, 3, 4, 5, 0, 0]  # padding holds token 0
    # conversation 1 begins with conversation 0's first 2 tokens, conversation 2 with 1 of conversation 1's
    seg = attention.Segments.of([4, 3, 2], shared=[0, 2, 1])
    assert (seg.count, seg.width, seg.shared) == (3, 4, 3)
    assert seg.slots.tolist() == [0, 1, 2, 3, 6, 9]  # each token's output comes from its own row
    assert seg.source.tolist() == [0, 1, 2, 3, 0, 1, 4, 0, 0, 5, 0, 0]

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
