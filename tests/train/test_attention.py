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


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox"])
def test_segment_attention_matches_the_masked_packed_row(lively_models, arch):
    tokenizer = AutoTokenizer.from_pretrained(lively_models[arch])
    ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(lively_models[arch])
    batch = _packed(tokenizer)
    assert batch.segments.count == 4 and batch.segments.slots.numel() == batch.tokens
    masked_logits, masked_grads = _logits_and_grads(model, batch, segments=False)
    assert attention.switch_on(model) and model.config._attn_implementation == attention.NAME
    logits, grads = _logits_and_grads(model, batch, segments=True)
    torch.testing.assert_close(logits, masked_logits, rtol=1e-4, atol=1e-4)
    assert grads.keys() == masked_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], masked_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    # Without segments the switched model is SDPA with transformers' own mask: packed rows stay apart
    fallback, _ = _logits_and_grads(model, batch, segments=False)
    torch.testing.assert_close(fallback, masked_logits, rtol=0, atol=0)
    attention.switch_off(model)
    assert model.config._attn_implementation == "sdpa"


def test_the_grid_uses_the_fused_kernel_above_its_limit(lively_models, monkeypatch):
    """The memory-saving path (for long conversations) gives the same logits as the unfused one."""
    tokenizer = AutoTokenizer.from_pretrained(lively_models["llama"])
    ensure_chat_template(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(lively_models["llama"])
    attention.switch_on(model)
    batch = _packed(tokenizer)
    unfused, _ = _logits_and_grads(model, batch, segments=True)
    monkeypatch.setattr(attention, "UNFUSED_LIMIT", 0)
    fused, _ = _logits_and_grads(model, batch, segments=True)
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-4)


def test_a_model_not_on_sdpa_is_left_alone(lively_models):
    model = AutoModelForCausalLM.from_pretrained(lively_models["llama"], attn_implementation="eager")
    assert attention.switch_on(model) is False and model.config._attn_implementation == "eager"


def test_segments_place_each_token_in_its_conversations_row():
    seg = attention.Segments.of([2, 3, 1])
    assert (seg.count, seg.width) == (3, 3)
    assert seg.slots.tolist() == [0, 1, 3, 4, 5, 6]
