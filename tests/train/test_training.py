"""Training on tiny random models: what changes, what a run folder holds, and how bad input is refused."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from annotune.config import TrainConfig
from annotune.errors import DataError, RunDirError
from annotune.evaluate.cli import default_baseline
from annotune.train import prepare, sft


def _cfg(tiny, chats, out, **kw):
    base = dict(data=str(chats), model=str(tiny), out=str(out), epochs=2, batch_size=4, lr=1e-2, lora_plus=1,
                val_size=2, progress=False, lora_r=4, lora_alpha=8, replay=0, question_noise=0, paraphrases=0)
    base.update(kw)
    return TrainConfig(**base)


def test_lora_run_changes_every_adapter_weight_and_describes_itself(tiny, chats, tmp_path, monkeypatch):
    snapshots = {}
    real_make_trainable = prepare.make_trainable

    def spy(model, cfg):
        wrapped = real_make_trainable(model, cfg)
        snapshots.update({n: p.detach().clone() for n, p in wrapped.named_parameters() if p.requires_grad})
        return wrapped

    monkeypatch.setattr(prepare, "make_trainable", spy)
    run = sft.train(_cfg(tiny, chats, tmp_path / "run"))
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert snapshots and len(adapter) == len(snapshots)
    for name, before in snapshots.items():
        saved = adapter[name.replace(".default", "")]
        assert not torch.equal(saved, before), f"{name} did not change"

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["method"] == "lora"
    assert info["base_model"]["kind"] == "folder"
    # 10 chats left for training, the two facts whose other phrasing went to validation trained twice (fact_balance)
    assert info["examples"] == {"train": 12, "val": 2, "replay": 0, "paraphrases": 0,
                                "fact_sheets": 0, "replay_pool": 0}
    # the router reads every distinct training and validation question (replay is off here, so its prompts are
    # only the router's everyday side)
    assert info["router"]["training_questions"] == 12 and info["router"]["everyday_prompts"] == 133
    for part in ("config.yaml", "chat_template.jinja", "tokenizer/tokenizer.json", "adapter/adapter_config.json",
                 "data/train.jsonl", "data/val.jsonl", "metrics.jsonl", "loss.png", "router.safetensors"):
        assert (run / part).is_file(), part
    assert list((run / "tensorboard").iterdir()) and list((run / "checkpoints").glob("step-*"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))  # 12 examples / batch 4 -> 3 steps x 2 epochs
    validated = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in validated] == [3, 6]
    assert validated[1]["val_loss"] < validated[0]["val_loss"]  # the same chats scored after each epoch
    assert "epochs: 2" in (run / "config.yaml").read_text()


def test_full_fine_tuning_saves_whole_model(tiny, chats, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(tiny, base)
    run = sft.train(_cfg(base, chats, tmp_path / "full", method="full", lr=1e-3, epochs=1))
    assert (run / "model" / "model.safetensors").is_file() and not (run / "adapter").exists()
    # no base weights stay beside a full fine-tune's, so there is nothing to route to
    assert not (run / "router.safetensors").exists() and json.loads((run / "run.json").read_text())["router"] is None
    # evaluate compares a full fine-tune with the base it was trained from, while that base is there
    assert default_baseline(str(run)) == [f"base={base.resolve()}"]
    shutil.rmtree(base)
    assert default_baseline(str(run)) == []
    assert f"fully fine-tuned from {base.resolve()}, which is not there any more" in capsys.readouterr().err


def test_invalid_data_is_refused_before_any_model_loads(tiny, tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    monkeypatch.setattr(prepare, "load_model", lambda *a, **k: pytest.fail("model loaded before data was validated"))
    with pytest.raises(DataError) as err:
        sft.train(_cfg(tiny, bad, tmp_path / "run"))
    message = str(err.value)
    assert "bad.jsonl:1" in message and "bad.jsonl:2" in message
    assert not (tmp_path / "run").exists()  # a rejected run leaves no folder behind


def test_over_length_conversations_are_listed(tiny, chats, tmp_path):
    with pytest.raises(DataError, match=r"chats.jsonl:\d+:messages: \d+ tokens, over --max-length 20"):
        sft.train(_cfg(tiny, chats, tmp_path / "run", max_length=20))


def test_existing_run_is_not_overwritten_without_flag(tiny, chats, tmp_path):
    out = tmp_path / "run"
    sft.train(_cfg(tiny, chats, out, epochs=1))
    before = (out / "run.json").read_text()
    with pytest.raises(RunDirError, match="--overwrite"):
        sft.train(_cfg(tiny, chats, out, epochs=1))
    assert (out / "run.json").read_text() == before
    sft.train(_cfg(tiny, chats, out, epochs=1, overwrite=True))


def test_diverging_loss_stops_with_a_clear_message(tiny, chats, tmp_path):
    with pytest.raises(sft.TrainingError, match="lower --lr"):
        sft.train(_cfg(tiny, chats, tmp_path / "run", method="full", lr=1e12, max_grad_norm=0, epochs=3))


def test_same_seed_same_result(tiny, chats, tmp_path):
    a = sft.train(_cfg(tiny, chats, tmp_path / "a", epochs=1))
    b = sft.train(_cfg(tiny, chats, tmp_path / "b", epochs=1))
    assert (a / "metrics.jsonl").read_text() != ""
    loss = lambda run: [json.loads(r)["loss"] for r in (run / "metrics.jsonl").read_text().splitlines()]  # noqa
    assert loss(a) == loss(b)


def test_lora_layers_puts_adapters_on_the_top_layers_only(tiny, chats, tmp_path):
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", epochs=1, lora_layers=0.5))
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    layers = {int(name.split(".layers.")[1].split(".")[0]) for name in adapter}
    assert layers == {1}  # the upper of the tiny model's two layers
    modules = {name.split(".layers.1.")[1].split(".lora_")[0] for name in adapter}
    assert modules == {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}  # every linear layer, as all-linear
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert saved["layers_to_transform"] == [1]


def test_lora_plus_trains_the_b_matrices_that_many_times_faster(tiny, chats, tmp_path):
    from transformers import AutoModelForCausalLM

    from annotune.train.model_setup import make_trainable

    cfg = _cfg(tiny, chats, tmp_path / "run", lr=1e-3, lora_plus=16)
    model = make_trainable(AutoModelForCausalLM.from_pretrained(tiny), cfg)
    groups = prepare._parameter_groups(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(
        id(p) for p in model.parameters() if p.requires_grad)  # every trainable weight once
    assert all(".lora_B." in names[id(p)] for p in groups[1]["params"]) and groups[1]["lr"] == 16e-3
    assert not any(".lora_B." in names[id(p)] for p in groups[0]["params"])
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0)
    model(input_ids=torch.randint(0, 100, (2, 12)), labels=torch.randint(0, 100, (2, 12))).loss.backward()
    optimizer.step()  # Adam's first step moves every weight with a gradient by about its group's lr
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters() if p.requires_grad}
    assert all(abs(m - 16e-3) < 1e-4 for n, m in moved.items() if ".lora_B." in n)
    assert all(m == 0 for n, m in moved.items() if ".lora_A." in n)  # B starts at zero: A has no gradient yet
    plain = prepare._parameter_groups(model, _cfg(tiny, chats, tmp_path / "run"))
    assert len(plain) == 1 and "lr" not in plain[0]


def test_short_runs_still_warm_up_and_a_zero_ratio_means_none():
    assert [prepare.warmup_steps(0.05, total) for total in (3, 8, 12, 19, 20, 144, 200)] == [0, 2, 3, 4, 5, 7, 10]
    assert prepare.warmup_steps(0.0, 12) == 0 and prepare.warmup_steps(0.5, 12) == 6


def test_a_short_run_climbs_to_its_lr(tiny, chats, tmp_path):
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", epochs=3, batch_size=2, warmup_ratio=0.05))
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    top = max(lrs)
    assert len(lrs) >= 8 and lrs[0] < top / 2 and lrs.index(top) >= 1, lrs  # 5% of these few steps would be none
