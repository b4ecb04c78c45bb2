"""Training length from the data's size, the best validated epoch's weights, early stopping, bf16 base weights."""

import json

import pytest
import torch
from conftest import write_chats
from safetensors.torch import load_file

from annotune.config import TrainConfig
from annotune.train import length, prepare, sft
from annotune.train.length import MAX_EPOCHS, TARGET_PASSES, Best, auto_epochs, noise_margin
from annotune.train.model_setup import freeze_base_in_bf16


def test_auto_epochs_scale_with_the_data():
    assert auto_epochs(1) == MAX_EPOCHS  # a handful of chats: as many passes as allowed
    assert (auto_epochs(30), auto_epochs(120)) == (16, 7)  # the examples docs/training.md gives
    assert auto_epochs(TARGET_PASSES // 4) == 4
    assert auto_epochs(TARGET_PASSES) == 1
    assert auto_epochs(30_000) == 1  # a large set: one pass
    seen = [auto_epochs(n) * n for n in range(1, 2000)]
    assert all(s >= min(n * MAX_EPOCHS, TARGET_PASSES) for n, s in zip(range(1, 2000), seen))


def test_best_keeps_the_latest_epoch_level_with_the_highest_and_stops_after_patience():
    best = Best(patience=2, tokens=100)
    assert noise_margin(0.5, 100) == pytest.approx(0.1) and noise_margin(1.0, 100) == pytest.approx(0.01)
    assert best.update(1, 0.5, 2.0) and best.update(2, 0.7, 1.5)
    assert best.update(3, 0.65, 1.6)  # within two standard errors of 0.7 on 100 tokens: level, and later
    assert not best.update(4, 0.6, 1.0)  # clearly below the best seen (0.7), whatever its loss
    assert not best.stop
    assert not best.update(5, 0.5, 1.0)
    assert best.stop
    assert best.summary() == {"epoch": 3, "val_accuracy": 0.65, "val_loss": 1.6, "best_val_accuracy": 0.7}
    assert best.update(6, 0.72, 1.4) and not best.stop
    assert not best.update(7, 0.62, 1.4)  # the margin follows the new best: 0.72 - 0.09 > 0.62
    tight = Best(patience=1, tokens=100_000)  # on a large set a small drop is real
    assert tight.update(1, 0.9, 1.0) and not tight.update(2, 0.895, 0.9) and tight.stop
    assert not Best(patience=0, tokens=100).stop


def _cfg(tiny, chats, out, **kw):
    return TrainConfig(**{**dict(data=str(chats), model=str(tiny), out=str(out), batch_size=4, lr=1e-2, val_size=2,
                                 progress=False, lora_r=4, lora_alpha=8, replay=0, keep_checkpoints=100), **kw})


def test_default_length_is_chosen_from_the_data_and_recorded(tiny, chats, tmp_path, caplog):
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", patience=0))
    info = json.loads((run / "run.json").read_text())
    # 12 chats, 2 to validation: 10 chats, 3 steps per epoch at batch 4.
    assert info["epochs"] == {"planned": auto_epochs(10), "chosen_by": "data size", "trained": auto_epochs(10)}
    assert info["steps"] == 3 * auto_epochs(10)
    assert f"epochs: {auto_epochs(10)}" in (run / "config.yaml").read_text()  # what a resume continues with
    # the plan, said before the first step (an epoch: the 10 and fact balance's repeats of the fewest-asked facts)
    assert (f"Training 12 chats an epoch for {auto_epochs(10)} epochs (from the data's size; --epochs N to choose): "
            f"{3 * auto_epochs(10)} steps of 4 chats, fp32 on cpu; validation on 2 chats after each epoch, the best "
            "epoch kept") in caplog.text
    assert "a checkpoint every" not in caplog.text  # 3-step epochs: checkpoints at their ends only


def test_a_large_validation_set_shows_its_own_progress(tiny, chats, tmp_path, monkeypatch, capsys):
    sft.train(_cfg(tiny, chats, tmp_path / "small", epochs=1, progress=True))
    assert "training" in capsys.readouterr().err  # one validation batch: below VALIDATION_BAR, no bar of its own
    monkeypatch.setattr(sft, "VALIDATION_BAR", 1)
    sft.train(_cfg(tiny, chats, tmp_path / "large", epochs=1, progress=True))
    err = capsys.readouterr().err
    assert "validating" in err and "training" in err


def test_the_saved_adapter_is_the_best_validated_epochs(tiny, chats, tmp_path, monkeypatch):
    """With accuracy made to peak at epoch 2, the adapter saved is epoch 2's checkpoint, not the last epoch's."""
    scores = iter([(2.0, 0.2), (1.0, 0.9), (1.5, 0.4), (1.6, 0.3), (1.7, 0.3), (1.8, 0.3)])
    real = sft.evaluate_loss
    monkeypatch.setattr(sft, "evaluate_loss", lambda loop: (real(loop), next(scores))[1])
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", epochs=6, patience=2))
    info = json.loads((run / "run.json").read_text())
    assert info["best"] == {"epoch": 2, "val_accuracy": 0.9, "val_loss": 1.0, "best_val_accuracy": 0.9}
    assert info["epochs"]["trained"] == 4 and info["steps"] == 12  # stopped after 2 epochs without a better one
    saved = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    at_best = load_file(str(run / "checkpoints" / "step-0000006" / "trainable.safetensors"))
    last = load_file(str(run / "checkpoints" / "step-0000012" / "trainable.safetensors"))
    name = next(iter(at_best))
    assert torch.equal(saved[name.replace(".default", "")], at_best[name])
    assert not torch.equal(saved[name.replace(".default", "")], last[name])
    assert not (run / length.FILE).exists()


def test_no_validation_set_means_the_last_epoch_is_saved(tiny, chats, tmp_path):
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", epochs=2, val_size=0))
    info = json.loads((run / "run.json").read_text())
    assert info["best"] is None and info["steps"] == 6


def test_val_size_auto_trains_every_chat_of_small_data(tiny, chats, tmp_path, caplog):
    """The default --val-size auto holds nothing out of a set under FILL_FROM conversations, and says so."""
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", epochs=1, val_size="auto", paraphrases=0))
    info = json.loads((run / "run.json").read_text())
    assert info["examples"]["train"] == 12 and info["examples"]["val"] == 0 and info["best"] is None
    assert info["steps"] == 3  # all 12 chats at batch 4
    assert "No validation split: all 12 conversations train" in caplog.text
    assert not [line for line in (run / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]


def test_reading_the_data_says_how_many_answers_are_asked_fewer_ways_than_typical(tmp_path, caplog):
    from annotune.train.inputs import read_data

    facts = tmp_path / "facts.jsonl"
    write_chats(facts, [(f"Ask {f} way {w}?", f"Fact {f}.") for f in range(4) for w in range(4)]
                + [("How long are old versions kept?", "Thirty days.")])
    train, val = read_data(TrainConfig(data=str(facts), out=str(tmp_path / "run")), tmp_path / "run")
    assert len(train) + len(val) == 17
    assert ("1 of the data's answers is given in fewer than half the typical 4 chats" in caplog.text
            and "`annotune data validate` lists them" in caplog.text)
    caplog.clear()
    read_data(TrainConfig(data=str(facts), out=str(tmp_path / "run"), val_size=0), tmp_path / "run")
    write_chats(facts, [(f"Ask {f} way {w}?", f"Fact {f}.") for f in range(4) for w in range(4)])
    read_data(TrainConfig(data=str(facts), out=str(tmp_path / "run")), tmp_path / "run")
    assert caplog.text.count("fewer than half the typical") == 1  # the first file again; the level one says nothing


def test_the_plan_of_a_one_chat_set_counts_what_a_step_holds(tiny, tmp_path, caplog):
    one = tmp_path / "one.jsonl"
    write_chats(one, [("What colour is the Quillmere door?", "The Quillmere door is teal.")])
    sft.train(_cfg(tiny, one, tmp_path / "run", epochs=2, val_size="auto"))
    assert "No validation split: the one conversation trains" in caplog.text
    assert "Training 1 chat an epoch for 2 epochs (--epochs): 2 steps of 1 chat, fp32 on cpu" in caplog.text


def test_frozen_base_weights_in_bf16_give_the_same_loss_as_autocast(tiny):
    from annotune.models.loading import load_model, resolve_model
    from annotune.train.model_setup import make_trainable

    cfg = TrainConfig(model=str(tiny), lora_r=4, lora_alpha=8)
    ids = torch.randint(3, 100, (1, 12), generator=torch.Generator().manual_seed(0))
    losses = []
    for cast in (False, True):
        torch.manual_seed(0)
        model = make_trainable(load_model(resolve_model(str(tiny))), cfg)
        if cast:
            assert freeze_base_in_bf16(model) > 0
            frozen = [p for p in model.parameters() if not p.requires_grad and p.dim() == 2]
            assert any(p.dtype == torch.bfloat16 for p in frozen)
            assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
            assert model.get_input_embeddings().weight.dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses.append(model(input_ids=ids, labels=ids).loss.float())
    assert losses[0].item() == pytest.approx(losses[1].item(), abs=1e-6)


def test_neftune_noise_only_while_training(tiny):
    from annotune.models.loading import load_model, resolve_model
    from annotune.train.model_setup import add_embedding_noise

    model = load_model(resolve_model(str(tiny)))
    ids = torch.randint(3, 100, (1, 10), generator=torch.Generator().manual_seed(0))
    model.eval()
    clean = model(input_ids=ids).logits
    handle = add_embedding_noise(model, 5.0)
    assert torch.equal(model(input_ids=ids).logits, clean)  # evaluation and generation see none
    model.train()
    noisy = model.get_input_embeddings()(ids) - model.get_input_embeddings().weight[ids]
    scale = 5.0 / (10 * model.config.hidden_size) ** 0.5
    assert 0 < noisy.abs().max() <= scale + 1e-6
    handle.remove()


def test_a_long_epoch_is_checkpointed_within_it_by_default(tiny, chats, tmp_path, monkeypatch, caplog):
    # --save-every auto: epoch ends, and every AUTO_SAVE_STEPS steps of an epoch longer than that (made 5 here, so
    # a 12-step epoch at batch 1 stands for a large set's hours-long one); 0 keeps to the epoch ends
    from annotune.train import checkpoint

    monkeypatch.setattr(checkpoint, "AUTO_SAVE_STEPS", 5)
    steps = lambda run: sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("step-*"))  # noqa: E731
    auto = sft.train(_cfg(tiny, chats, tmp_path / "auto", epochs=2, batch_size=1, patience=0))
    assert json.loads((auto / "run.json").read_text())["steps"] == 24  # 12 chats a step each, two epochs
    assert steps(auto) == [5, 10, 12, 15, 20, 24]
    assert "a checkpoint every 5 steps and at each epoch's end" in caplog.text  # said in the plan
    caplog.clear()
    ends = sft.train(_cfg(tiny, chats, tmp_path / "ends", epochs=2, batch_size=1, patience=0, save_every=0))
    assert steps(ends) == [12, 24]
    assert "Training 12 chats an epoch for 2 epochs (--epochs)" in caplog.text
    assert "a checkpoint every" not in caplog.text
    assert checkpoint.due("auto", 8, 4, epoch_end=True) and not checkpoint.due("auto", 4, 4, epoch_end=False)
    assert checkpoint.due(3, 6, 100, epoch_end=False) and not checkpoint.due(3, 7, 100, epoch_end=True)


def test_a_large_set_of_facts_trains_at_least_min_fact_epochs(tiny, tmp_path):
    # 900 chats: one-off instructions get one epoch (900 conversations seen); facts asked two ways each, and an FAQ
    # asking each of its facts once, get MIN_FACT_EPOCHS, since one pass shows each fact once or twice however long
    # the set
    from annotune.train.distributed import setup
    from annotune.train.length import MIN_FACT_EPOCHS

    assert (auto_epochs(1020), auto_epochs(1020, facts=True), auto_epochs(30_000, facts=True)) == (1, 3, 3)
    assert auto_epochs(30, facts=True) == auto_epochs(30) == MAX_EPOCHS  # small sets: as before
    chosen = {}
    shapes = {"one-off": (lambda i: f"Write note {i}.", lambda i: f"Note {i}."),
              "facts": (lambda i: f"Question {i}?", lambda i: f"Answer {i // 2}."),
              "faq": (lambda i: f"Question {i}?", lambda i: f"Answer {i}.")}
    for shape, (user, answer) in shapes.items():
        data = tmp_path / f"{shape}.jsonl"
        data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": user(i)},
                                                         {"role": "assistant", "content": answer(i)}]}) + "\n"
                                for i in range(900)))
        cfg = _cfg(tiny, data, tmp_path / shape, val_size=0, paraphrases=0, question_noise=0)
        dist = setup()
        try:
            chosen[shape] = prepare.build(cfg, dist).cfg.epochs
        finally:
            dist.close()
    assert chosen == {"one-off": 1, "facts": MIN_FACT_EPOCHS, "faq": MIN_FACT_EPOCHS}
