"""The generation engine on tiny models: continuous batching gives exactly what plain `generate` gives, per-request
settings, stop strings, seeds, streaming, cancellation, context checks and failures."""

from __future__ import annotations

import time

import pytest
import torch

from annotune.generation.config import GenerationConfig
from annotune.generation.engine import ContextLengthError
from annotune.generation.loading import load_engine
from annotune.generation.text import TextAssembler

QUESTIONS = [[{"role": "user", "content": f"How do I reset device {i}? " * (i % 5 + 1)}] for i in range(24)]


def _hf_greedy(engine, name: str, messages: list[dict], max_new_tokens: int) -> list[int]:
    served = engine.served(name)
    ids = torch.tensor([served.prompt_ids(messages)])
    out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, eos_token_id=sorted(served.stop_ids),
                                pad_token_id=served.tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "qwen2"])
def test_conversations_scored_together_score_as_each_alone(lively_models, arch, monkeypatch):
    # 12 conversations of different lengths, scored in padded groups, against each scored on its own (a budget of
    # one token puts every conversation in a group of its own): padding must change no conversation's loss
    import annotune.generation.engine as engine_module
    from annotune.conversation import Conversation, Message

    convs = [Conversation([Message("user", q[0]["content"]), Message("assistant", f"Press button {i} " * (i % 4 + 1))])
             for i, q in enumerate(QUESTIONS[:12])]
    with load_engine(str(lively_models[arch])) as engine:
        name = next(iter(engine.models))
        together = engine.score(name, convs)
        monkeypatch.setattr(engine_module, "SCORE_TOKENS", 1)
        alone = engine.score(name, convs)
    assert [count for _, count in together] == [count for _, count in alone]
    assert [loss for loss, _ in together] == pytest.approx([loss for loss, _ in alone], rel=1e-4)
    assert len({round(loss, 3) for loss, _ in alone}) > 6  # the losses differ, so a mix-up between rows would show

@pytest.fixture(scope="module")
def lively_engine(lively_models):
    with load_engine(str(lively_models["llama"]), max_batch=4) as engine:
        yield engine


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "qwen2"])
def test_continuous_batching_gives_what_plain_generate_gives(lively_models, arch):
    # max_batch 4 with 24 prompts of different lengths: rows join and leave the batch all the time
    with load_engine(str(lively_models[arch]), max_batch=4) as engine:
        name = next(iter(engine.models))
        results = engine.generate(name, QUESTIONS, GenerationConfig(max_new_tokens=30))
        expected = [_hf_greedy(engine, name, q, 30) for q in QUESTIONS]
    assert [r.token_ids for r in results] == expected
    assert len({tuple(ids) for ids in expected}) > 10  # the answers differ, so a mix-up between rows would show


PREAMBLE = "How do I reset the main device of the depot by the river? " * 3


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "qwen2"])
def test_prompts_that_start_alike_have_their_start_computed_once_and_answer_as_plain_generate(lively_models, arch):
    # a long shared preamble, asked in waves (max_batch 3 of 10 prompts) and again in a second call: later rows
    # reuse the kept keys and values of the shared start, and each answer is still what plain generate gives
    questions = [[{"role": "user", "content": PREAMBLE + f"How do I reset device {i}? " * (i % 3 + 1)}]
                 for i in range(10)]
    with load_engine(str(lively_models[arch]), max_batch=3) as engine:
        name = next(iter(engine.models))
        first = engine.generate(name, questions, GenerationConfig(max_new_tokens=20))
        kept = engine._starts.kept
        again = engine.generate(name, questions[::-1], GenerationConfig(max_new_tokens=20))
        expected = [_hf_greedy(engine, name, q, 20) for q in questions]
    assert [r.token_ids for r in first] == expected
    assert [r.token_ids for r in again] == expected[::-1]
    longest = max(map(len, kept))
    assert longest >= len(engine.served(name).prompt_ids([{"role": "user", "content": PREAMBLE}])) - 4
    assert len({tuple(ids) for ids in expected}) > 1  # the answers differ, so a mix-up between rows would show


def test_concurrent_answers_equal_sequential_ones_and_streams_equal_results(lively_engine):
    cfg = GenerationConfig(max_new_tokens=25)
    together = lively_engine.generate("llama", QUESTIONS[:8], cfg)
    for question, batched in zip(QUESTIONS[:8], together):
        stream = lively_engine.stream("llama", question, cfg)
        pieces = list(stream)
        assert "".join(pieces) == stream.result.text == batched.text
        assert stream.result.token_ids == batched.token_ids


def test_results_carry_counts_and_finish_reasons(lively_engine):
    served = lively_engine.served("llama")
    result = lively_engine.generate("llama", QUESTIONS[:1], GenerationConfig(max_new_tokens=7))[0]
    assert result.prompt_tokens == len(served.prompt_ids(QUESTIONS[0]))
    assert result.completion_tokens == len(result.token_ids) == 7 and result.finish_reason == "length"
    assert result.text == served.tokenizer.decode(result.token_ids, skip_special_tokens=True)


def test_stop_strings_are_cut_exactly_and_never_streamed(lively_engine):
    plain = lively_engine.generate("llama", QUESTIONS[2:3], GenerationConfig(max_new_tokens=40))[0].text
    stop = plain[10:13]
    assert len(stop) == 3 and plain.index(stop) >= 1
    cfg = GenerationConfig(max_new_tokens=40, stop=["never-there", stop])
    stream = lively_engine.stream("llama", QUESTIONS[2], cfg)
    pieces = list(stream)
    assert stream.result.text == plain[:plain.index(stop)] == "".join(pieces)
    assert stream.result.finish_reason == "stop"


def test_same_seed_same_answer_whatever_shares_the_batch(lively_engine):
    sampled = GenerationConfig(max_new_tokens=30, temperature=1.0, top_p=0.9, seed=1234)
    alone = lively_engine.generate("llama", QUESTIONS[:1], sampled)[0]
    crowd = lively_engine.generate("llama", QUESTIONS[:4] + QUESTIONS[:1], sampled)
    assert crowd[0].token_ids == alone.token_ids == crowd[4].token_ids
    by_seed = {tuple(lively_engine.generate("llama", QUESTIONS[:1], sampled.model_copy(update={"seed": s}))[0]
                     .token_ids) for s in range(5)}
    assert len(by_seed) > 1  # the seed matters: sampling really samples


def test_each_request_keeps_its_own_settings_in_a_shared_batch(lively_engine):
    greedy = GenerationConfig(max_new_tokens=20)
    expected = lively_engine.generate("llama", QUESTIONS[:3], greedy)
    sampled = lively_engine.stream("llama", QUESTIONS[0], GenerationConfig(max_new_tokens=20, temperature=1.5,
                                                                           seed=7))
    mixed = lively_engine.generate("llama", QUESTIONS[:3], greedy)  # joins the batch beside the sampled row
    list(sampled)
    assert [r.token_ids for r in mixed] == [r.token_ids for r in expected]
    assert sampled.result.token_ids != expected[0].token_ids


def test_utf8_characters_are_never_split_between_pieces(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    text = "Grüße aus Köln 😀 日本語テキスト — «ok»"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text)  # byte-level pieces: most characters span several tokens
    assembler = TextAssembler(tokenizer, stop=[])
    pieces = [assembler.add(i) for i in ids] + [assembler.add(None, final=True)]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_a_stop_string_split_over_tokens_is_held_back(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = tokenizer("answer: yes\nUser: next", add_special_tokens=False)["input_ids"]
    assembler = TextAssembler(tokenizer, stop=["\nUser:"])
    pieces = []
    for i in ids:
        pieces.append(assembler.add(i))
        assert "\n" not in "".join(pieces)  # the start of the stop string never goes out
        if assembler.stopped:
            break
    assert assembler.stopped and "".join(pieces) + assembler.add(None, final=True) == "answer: yes"


def test_prompt_over_the_context_is_refused(lively_models):
    with load_engine(str(lively_models["llama"]), max_model_len=64) as engine:
        long = [{"role": "user", "content": "word " * 80}]
        with pytest.raises(ContextLengthError, match="context is 64 tokens"):
            engine.generate("llama", [long], GenerationConfig(max_new_tokens=5))
        short = [{"role": "user", "content": "hi"}]
        with pytest.raises(ContextLengthError):
            engine.prepare("llama", short, GenerationConfig(max_new_tokens=60))
        _, prompt, cfg = engine.prepare("llama", short, GenerationConfig(max_new_tokens=60), budget_given=False)
        assert cfg.max_new_tokens == 64 - len(prompt)
        result = engine.generate("llama", [short], GenerationConfig(max_new_tokens=64 - len(prompt)))[0]
        assert result.completion_tokens <= 64 - len(prompt)


def test_closing_a_stream_stops_its_generation(lively_models):
    with load_engine(str(lively_models["llama"])) as engine:
        stream = engine.stream("llama", QUESTIONS[0], GenerationConfig(max_new_tokens=480))
        iterator = iter(stream)
        next(iterator)
        iterator.close()  # what a caller that stops reading does
        deadline = time.time() + 5
        while engine.load != (0, 0) and time.time() < deadline:
            time.sleep(0.01)
        assert engine.load == (0, 0)
        assert stream.job.reason == "cancelled" and len(stream.job.text.ids) < 480  # it did not run on


def test_a_failure_in_the_engine_reaches_the_caller_and_the_engine_goes_on(lively_models, monkeypatch):
    with load_engine(str(lively_models["llama"])) as engine:
        real = engine.model.forward
        calls = {"n": 0}

        def flaky(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("simulated failure")
            return real(*args, **kwargs)

        monkeypatch.setattr(engine.model, "forward", flaky)
        with pytest.raises(RuntimeError, match="simulated failure"):
            list(engine.stream("llama", QUESTIONS[0], GenerationConfig(max_new_tokens=10)))
        again = engine.generate("llama", QUESTIONS[:1], GenerationConfig(max_new_tokens=10))[0]
        assert again.completion_tokens == 10


def test_generation_config_refuses_bad_settings():
    from pydantic import ValidationError

    for bad in ({"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"stop": [""]}):
        with pytest.raises(ValidationError):
            GenerationConfig(**bad)
