"""The loss mask: assistant tokens (with their end-of-turn token) only, on every supported chat template."""

import pytest
from transformers import AutoTokenizer

from annotune.conversation import Conversation, Message
from annotune.models.templates import (DEFAULT_CHAT_TEMPLATE, IGNORE, encode, ensure_chat_template, render,
                                       stop_token_ids)

END_OF_TURN = {"chatml": "<|im_end|>", "smollm": "<|im_end|>", "llama3": "<|eot_id|>", "none": "<|endoftext|>"}


def conversation(weight_first=None):
    return Conversation([
        Message("system", "Be brief."),
        Message("user", "How do I reset it?"),
        Message("assistant", "Hold the power button.", weight=weight_first),
        Message("user", "Thanks!"),
        Message("assistant", "You are welcome."),
    ])


def supervised_text(tokenizer, enc):
    return tokenizer.decode([t for t in enc.targets if t != IGNORE])


@pytest.mark.parametrize("template", ["chatml", "smollm", "llama3", "none"])
def test_mask_covers_assistant_turns_and_end_of_turn(tiny_models, template):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[template])
    ensure_chat_template(tokenizer)
    enc = encode(tokenizer, conversation())
    text = supervised_text(tokenizer, enc)
    eot = END_OF_TURN[template]
    assert text.replace("\n", "") == f"Hold the power button.{eot}You are welcome.{eot}"
    assert "reset" not in text and "Be brief" not in text and "Thanks" not in text
    # targets are next-token ids: every supervised target equals the following input id
    for t, target in enumerate(enc.targets):
        if target != IGNORE:
            assert target == enc.input_ids[t + 1]
    assert enc.targets[-1] == IGNORE


@pytest.mark.parametrize("template", ["chatml", "llama3", "none"])
def test_weight_zero_turn_is_context_only(tiny_models, template):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[template])
    ensure_chat_template(tokenizer)
    text = supervised_text(tokenizer, encode(tokenizer, conversation(weight_first=0)))
    assert "power button" not in text
    assert "You are welcome." in text


def test_base_model_gets_default_template_with_eos(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["none"])
    assert not tokenizer.chat_template
    assert ensure_chat_template(tokenizer) == DEFAULT_CHAT_TEMPLATE
    rendered = render(tokenizer, [{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert rendered.endswith("### Assistant:\n")
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]


def test_explicit_template_overrides_the_models(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["chatml"])
    ensure_chat_template(tokenizer, DEFAULT_CHAT_TEMPLATE)
    assert "### User:" in render(tokenizer, [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("template,stop", [("chatml", "<|im_end|>"), ("llama3", "<|eot_id|>")])
def test_stop_tokens_include_end_of_turn(tiny_models, template, stop):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[template])
    assert tokenizer.convert_tokens_to_ids(stop) in stop_token_ids(tokenizer)
