"""Routing: a run answers requests like its training questions with its adapter and leaves the rest to the base
weights, exactly as the base model would answer them, alone or in a batch that mixes both kinds."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from serve_fixtures import ANSWERS

from annotune.conversation import Conversation, Message
from annotune.generation.config import GenerationConfig
from annotune.generation.loading import load_engine
from annotune.generation.routing import MAX_TOKENS, Router, pooled, route_ids, user_text
from annotune.train.replay import load_prompts

CFG = GenerationConfig(max_new_tokens=100)
EVERYDAY = [[{"role": "user", "content": p["prompt"]}] for p in load_prompts()[:6]]  # the router's general set
OWN = [[{"role": "user", "content": q}] for q in ANSWERS["support"]]  # the run's training questions


@pytest.fixture(scope="module")
def base_answers(memorized):
    with load_engine(f"base={memorized['base']}") as engine:
        return engine.generate("base", EVERYDAY, CFG)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox"])
def test_the_pooled_hidden_state_stops_at_its_layer(lively_models, arch):
    """The router's vector is the hidden state the whole forward gives at that layer, and no layer above it runs."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(lively_models[arch]).eval()
    body = model.get_decoder()
    ids = [[5, 9, 13, 2, 7], [3, 4], [8, 8, 8, 1]]
    mask = torch.tensor([[1] * len(i) + [0] * (5 - len(i)) for i in ids])
    with torch.no_grad():
        full = body(input_ids=torch.tensor([i + [0] * (5 - len(i)) for i in ids]), attention_mask=mask,
                    output_hidden_states=True).hidden_states
    runs = []
    body.layers[-1].register_forward_hook(lambda *a: runs.append(1))
    for layer in (1, 2):  # below the top, where the forward stops early; the top, whose state is the final norm's
        expected = (full[layer] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        torch.testing.assert_close(pooled(model, ids, layer, 0, "cpu"), expected, rtol=1e-5, atol=1e-5)
    assert len(runs) == 1  # only for the top layer's state


def test_the_nearer_set_decides():
    router = Router(1, torch.zeros(2), F.normalize(torch.tensor([[1.0, 0.0]]), dim=-1),
                    F.normalize(torch.tensor([[0.0, 1.0], [-1.0, 0.2]]), dim=-1))
    assert router.tuned(torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 1.01], [-3.0, 0.0]])) == [True, False, False, False]
    moved = Router(1, torch.tensor([0.0, -5.0]), router.domain, router.general)  # vectors are centred first
    assert moved.tuned(torch.tensor([[1.0, -5.0], [0.0, -4.0]])) == [True, False]


def test_each_dimension_is_standardised_by_its_spread(tmp_path):
    from annotune.generation.routing import build

    torch.manual_seed(0)
    spread = torch.tensor([50.0, 1.0, 1.0, 1.0])  # one dimension far larger than the rest, as in a decoder
    vectors = torch.randn(12, 4) * spread

    class Model:  # what pooled() reads: the decoder's hidden_states[layer], here one token per text
        config = type("Config", (), {"num_hidden_layers": 1})()

        def get_decoder(self):
            return lambda input_ids, **kw: type("Out", (), {"hidden_states": [None, vectors[input_ids[:, :1]]]})

    class Tokenizer:
        pad_token_id = 0

        def encode(self, text, add_special_tokens=False):
            return [int(text)]

    convs = [Conversation([Message("user", str(i)), Message("assistant", "a")]) for i in range(6)]
    router = build(Model(), Tokenizer(), convs, [str(i) for i in range(6, 12)])
    assert torch.allclose(router.scale, vectors.std(0)) and torch.allclose(router.centre, vectors.mean(0))
    unit = F.normalize((vectors - vectors.mean(0)) / vectors.std(0), dim=-1)
    assert torch.allclose(router.domain, unit[:6]) and torch.allclose(router.general, unit[6:])
    queries = torch.randn(40, 4) * spread
    q = F.normalize((queries - vectors.mean(0)) / vectors.std(0), dim=-1)
    expected = ((q @ unit[:6].T).amax(1) >= (q @ unit[6:].T).amax(1)).tolist()
    assert router.tuned(queries) == expected
    plain = Router(1, router.centre, F.normalize(vectors[:6] - router.centre, dim=-1),
                   F.normalize(vectors[6:] - router.centre, dim=-1))  # as saved before scales existed
    assert plain.tuned(queries) != expected  # unscaled, the large dimension decides differently
    router.save(tmp_path)
    again = Router.load(tmp_path / "router.safetensors")
    assert torch.equal(again.scale, router.scale) and again.tuned(queries) == expected
    plain.save(tmp_path)
    old = Router.load(tmp_path / "router.safetensors")
    assert old.scale is None and torch.allclose(old.domain, plain.domain, atol=1e-3)  # fp16 on disk


def test_the_router_reads_the_user_turns_only(memorized):
    from annotune.runs import RunFolder

    tok = RunFolder(memorized["support"]).tokenizer()
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"},
            {"role": "assistant", "content": "A bot."}, {"role": "user", "content": "Say the word"}]
    assert user_text(chat) == "Who are you?\nSay the word"
    assert route_ids(tok, chat) == tok.encode("Who are you?\nSay the word", add_special_tokens=False)
    assert route_ids(tok, [{"role": "system", "content": "Be brief."}]) is None
    long = route_ids(tok, [{"role": "user", "content": "word " * 2000}])
    assert len(long) == MAX_TOKENS  # the last tokens: a long conversation is judged by its latest turns


def test_training_writes_the_router(memorized):
    info = json.loads((memorized["support"] / "run.json").read_text())
    assert (memorized["support"] / "router.safetensors").is_file()
    router = Router.load(memorized["support"] / "router.safetensors")
    assert info["router"] == {"layer": router.layer, "training_questions": len(ANSWERS["support"]),
                              "everyday_prompts": len(load_prompts())}
    assert router.domain.shape[0] == 3 and router.general.shape[0] == len(load_prompts())
    assert torch.allclose(router.domain.norm(dim=-1), torch.ones(3), atol=1e-2)  # stored in fp16
    assert router.scale.shape == router.centre.shape and bool((router.scale > 0).all())


def test_a_routed_run_answers_its_questions_and_leaves_everyday_ones_to_the_base(memorized, base_answers):
    mixed = [OWN[0], EVERYDAY[0], OWN[1], *EVERYDAY[1:], OWN[2]]  # one batch of 4 holds both kinds at once
    with load_engine(f"run={memorized['support']}", max_batch=4) as engine:
        results = engine.generate("run", mixed, CFG)
        alone = [engine.generate("run", [conv], CFG)[0] for conv in (OWN[0], EVERYDAY[0])]
    own = [results[0], results[2], results[-1]]
    everyday = [results[1], *results[3:-1]]
    assert [r.route for r in own] == ["tuned"] * 3 and [r.route for r in everyday] == ["base"] * 6
    assert [r.text for r in own] == list(ANSWERS["support"].values())
    assert [r.token_ids for r in everyday] == [r.token_ids for r in base_answers]
    assert [r.token_ids for r in alone] == [results[0].token_ids, results[1].token_ids]

    with load_engine(f"run={memorized['support']}", routing=False) as engine:
        unrouted = engine.generate("run", [OWN[0], *EVERYDAY], CFG)
    assert all(r.route is None for r in unrouted) and unrouted[0].text == results[0].text
    # without the router the run's adapter answers the everyday prompts: not what the base model says
    assert [r.token_ids for r in unrouted[1:]] != [r.token_ids for r in base_answers]


def test_runs_served_together_each_route_with_their_own_router(memorized, base_answers):
    with load_engine([f"support={memorized['support']}", f"billing={memorized['billing']}"], max_batch=4) as engine:
        # one adapter and the base in a batch, then two adapters and the base, then one adapter and the base
        # again: each batch leaves the adapters as the next one needs them
        batches = [(["billing", "billing"], [EVERYDAY[0], OWN[0]]),
                   (["support", "billing", "billing", "support"], [OWN[0], OWN[0], EVERYDAY[0], EVERYDAY[0]]),
                   (["support", "support"], [OWN[0], EVERYDAY[0]])]
        first, results, last = (engine.generate(names, convs, CFG) for names, convs in batches)
    assert [r.route for r in results] == ["tuned", "tuned", "base", "base"]
    assert results[0].text == last[0].text == ANSWERS["support"]["Who are you?"]
    assert results[1].text == first[1].text == ANSWERS["billing"]["Who are you?"]
    assert results[2].token_ids == results[3].token_ids == base_answers[0].token_ids
    assert first[0].token_ids == last[1].token_ids == base_answers[0].token_ids
    assert [r.route for r in first + last] == ["base", "tuned", "tuned", "base"]


def test_reference_losses_are_scored_on_the_route_a_question_takes(memorized):
    from annotune.conversation import Conversation, Message

    everyday = Conversation([Message("user", EVERYDAY[0][0]["content"]), Message("assistant", "The Indian Ocean.")])
    own = Conversation([Message("user", "Who are you?"), Message("assistant", ANSWERS["support"]["Who are you?"])])
    with load_engine(f"base={memorized['base']}") as engine:
        base = engine.score("base", [everyday, own])
    with load_engine(f"run={memorized['support']}") as engine:
        routed = engine.score("run", [everyday, own])
    with load_engine(f"run={memorized['support']}", routing=False) as engine:
        unrouted = engine.score("run", [everyday, own])
    assert routed[0][0] == pytest.approx(base[0][0], rel=1e-4) and routed[0][1] == base[0][1]
    assert routed[1][0] == pytest.approx(unrouted[1][0], rel=1e-4)
    assert unrouted[1][0] < base[1][0]  # the run finds its own answer likelier than the base model does
    assert unrouted[0][0] != pytest.approx(base[0][0], rel=1e-3)  # and scores everyday answers its own way


def test_the_base_model_answers_without_the_runs_own_system_prompt(lively_models, tmp_path):
    from conftest import write_chats
    from serve_fixtures import train_memorizing

    base = lively_models["llama"]
    data = write_chats(tmp_path / "chats.jsonl", list(ANSWERS["support"].items()), system="Be brief.")
    run = train_memorizing(base, tmp_path / "run", data_file=data, epochs=20)
    told = [{"role": "system", "content": "Keep it short."}, *EVERYDAY[0]]
    echoed = [{"role": "system", "content": "Be brief."}, *EVERYDAY[0]]  # the run's own, as the chat page sends it
    with load_engine(f"run={run}") as engine:
        assert engine.served("run").system == "Be brief."  # added to requests that bring no system prompt
        plain, given, again = engine.generate("run", [EVERYDAY[0], told, echoed], CFG)
    assert again.route == "base" and again.token_ids == plain.token_ids and again.prompt_tokens == plain.prompt_tokens
    with load_engine(f"base={base}") as engine:
        base_plain, base_told = engine.generate("base", [EVERYDAY[0], told], CFG)
    assert plain.route == given.route == "base"
    # the prompt the base model read is the request's own, without the run's system prompt ...
    assert plain.prompt_tokens == base_plain.prompt_tokens < given.prompt_tokens == base_told.prompt_tokens
    assert plain.token_ids == base_plain.token_ids
    assert given.token_ids == base_told.token_ids  # ... and a system prompt the request brings itself is kept


def test_chat_and_generate_say_where_each_answer_came_from(memorized, tmp_path):
    from conftest import run_cli

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Who are you?"}) + "\n" + json.dumps({"messages": EVERYDAY[0]}) + "\n")
    routed = run_cli("generate", str(memorized["support"]), "--input", str(prompts), "--output",
                     str(tmp_path / "routed.jsonl"), "--max-new-tokens", "20")
    unrouted = run_cli("generate", str(memorized["support"]), "--input", str(prompts), "--output",
                       str(tmp_path / "unrouted.jsonl"), "--max-new-tokens", "20", "--no-routing")
    assert routed.returncode == unrouted.returncode == 0, routed.stderr + unrouted.stderr
    rows = [json.loads(line) for line in (tmp_path / "routed.jsonl").read_text().splitlines()]
    assert [r["route"] for r in rows] == ["tuned", "base"] and rows[0]["answer"] == ANSWERS["support"]["Who are you?"]
    assert all("route" not in json.loads(line) for line in (tmp_path / "unrouted.jsonl").read_text().splitlines())
    chat = run_cli("chat", str(memorized["support"]), "--prompt", EVERYDAY[0][0]["content"], "--max-new-tokens", "5")
    assert chat.returncode == 0 and "(answered by the base model" in chat.stderr
    own = run_cli("chat", str(memorized["support"]), "--prompt", "Who are you?")
    assert own.stdout.strip() == ANSWERS["support"]["Who are you?"] and "answered by the base" not in own.stderr
