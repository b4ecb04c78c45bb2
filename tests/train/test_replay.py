"""Self-distillation replay: the base model's own answers to everyday prompts go into training, generated once
per base model, with the domain's system prompt, and never any question of evaluate's probe."""

from __future__ import annotations

import json
import re

import pytest

from annotune.config import TrainConfig
from annotune.dataset.files import read_jsonl
from annotune.evaluate.run import load_probe
from annotune.generation.config import GenerationConfig
from annotune.generation.loading import load_engine
from annotune.train import replay, sft


def test_replay_prompts_share_no_question_with_the_probe():
    words = lambda text: set(re.findall(r"[a-z0-9]+", text.lower()))  # noqa: E731
    prompts = replay.load_prompts()
    assert len(prompts) >= 100 and len({p["id"] for p in prompts}) == len(prompts)
    for probe in load_probe():
        for prompt in prompts:
            a, b = words(probe["question"]), words(prompt["prompt"])
            assert len(a & b) / len(a | b) < 0.5, (probe["question"], prompt["prompt"])


def test_replay_adds_the_base_models_own_answers_with_the_shared_system_prompt(lively_models, chats, tmp_path,
                                                                             annotune_home, monkeypatch):
    base = lively_models["llama"]
    cfg = dict(data=str(chats), model=str(base), epochs=1, batch_size=4, lr=1e-3, val_size=0, progress=False,
               lora_r=4, lora_alpha=8, replay=1.0, paraphrases=0)
    run = sft.train(TrainConfig(**cfg, out=str(tmp_path / "a")))
    saved = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    replayed = [row for row in saved if row.get("source") == "replay"]
    # the run keeps the whole pool (every prompt the base answered); each epoch trains on 12 * 1.0 of it
    assert len(saved) == 12 + len(replayed) and 12 < len(replayed) <= len(replay.load_prompts())
    info = json.loads((run / "run.json").read_text())
    assert info["examples"] == {"train": 24, "val": 0, "replay": 12, "paraphrases": 0,
                                "fact_sheets": 0, "replay_pool": len(replayed)}
    assert info["default_system"] == "Be brief."
    # each replay answer is what the base model itself answers to the prompt, greedily
    with load_engine(str(base)) as engine:
        name = next(iter(engine.models))
        prompts = [[m for m in row["messages"] if m["role"] == "user"] for row in replayed]
        fresh = engine.generate(name, prompts, GenerationConfig(max_new_tokens=replay.MAX_NEW_TOKENS))
    assert [r.text.strip() for r in fresh] == [row["messages"][-1]["content"] for row in replayed]
    assert all(row["messages"][0] == {"role": "system", "content": "Be brief."} for row in replayed)

    assert list((annotune_home / "replay").glob("*.jsonl"))  # cached per base model and prompt set

    def no_generation(*args, **kwargs):
        raise AssertionError("replay answers were generated again instead of read from the cache")

    monkeypatch.setattr("annotune.generation.loading.load_engine", no_generation)
    again = sft.train(TrainConfig(**cfg, out=str(tmp_path / "b")))
    assert (again / "data" / "train.jsonl").read_text() == (run / "data" / "train.jsonl").read_text()
    off = sft.train(TrainConfig(**{**cfg, "replay": 0}, out=str(tmp_path / "c")))
    assert json.loads((off / "run.json").read_text())["examples"]["replay"] == 0


def test_shipped_answers_are_used_only_for_their_own_model_and_prompts(tmp_path, monkeypatch):
    prompts = replay.load_prompts()[:3]
    identity = {"ref": "some-model", "kind": "folder", "sha256": "abc"}
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(replay, "SHIPPED", shipped)
    made = []

    def generate(model_ref, wanted, progress=False):
        made.append(len(wanted))
        return [f"generated {p['id']}" for p in wanted]

    monkeypatch.setattr(replay, "generate_answers", generate)
    name = replay._cache_file(identity, prompts).name
    (shipped / name).write_text("".join(json.dumps({"id": p["id"], "answer": f"shipped {p['id']}"}) + "\n"
                                        for p in prompts))
    assert replay.base_answers(None, identity, prompts) == [f"shipped {p['id']}" for p in prompts]
    assert made == [] and not replay._cache_file(identity, prompts).exists()
    # another model, or another prompt set, is not what was shipped: its answers are generated (and cached)
    other = {**identity, "sha256": "abd"}
    assert replay.base_answers(None, other, prompts) == [f"generated {p['id']}" for p in prompts]
    assert replay.base_answers(None, identity, prompts[:2]) == [f"generated {p['id']}" for p in prompts[:2]]
    assert made == [3, 2]
    assert replay._cache_file(other, prompts).is_file() and replay._cache_file(identity, prompts[:2]).is_file()


@pytest.mark.slow
def test_the_embedded_models_shipped_answers_are_its_own(real_model_home):
    from annotune.models.identity import identity
    from annotune.models.loading import EMBEDDED_DEFAULT, resolve_model

    model_ref = resolve_model(EMBEDDED_DEFAULT)
    prompts = replay.load_prompts()
    # named by the key of this model, these prompts and this answer length: `make replay-answers` after changing any
    name = replay._cache_file(identity(model_ref), prompts).name
    assert sorted(p.name for p in replay.SHIPPED.glob("*.jsonl")) == [name]
    rows = read_jsonl(replay.SHIPPED / name)
    assert [r["id"] for r in rows] == [p["id"] for p in prompts]
    sample = prompts[::19]  # 7 prompts across the set, generated again greedily in fp32
    assert replay.generate_answers(model_ref, sample) == [r["answer"] for r in rows[::19]]
