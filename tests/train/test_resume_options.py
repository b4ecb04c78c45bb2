"""Through the real CLI: what `train --resume` does with options given alongside it, and which data it reads."""

import json
import shutil
from pathlib import Path

from conftest import run_cli, write_chats

RUN_FILES = ("config.yaml", "run.json", "data/train.jsonl", "data/val.jsonl", "metrics.jsonl",
             "adapter/adapter_model.safetensors")


def _train(tiny, data: Path, out: Path, epochs: int, *options: str):
    done = run_cli("train", str(data), "--model", str(tiny), "--out", str(out), "--lora-r", "4", "--lora-alpha", "8",
                   "--batch-size", "2", "--lr", "5e-3", "--val-size", "2", "--epochs", str(epochs), "--no-progress",
                   *options)
    assert done.returncode == 0, done.stderr


def _chats(path: Path, n: int, word: str = "Answer") -> Path:
    """Two questions per answer, so the validation split has phrasings of facts that stay in training."""
    return write_chats(path, [(f"Question {i}?", f"{word} number {i // 2}.") for i in range(n)])


def _snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in RUN_FILES}


def test_resume_refuses_options_that_would_change_the_run_naming_each_saved_value(tiny, tmp_path):
    data = _chats(tmp_path / "d.jsonl", 8)
    run = tmp_path / "run"
    _train(tiny, data, run, epochs=2)
    before = _snapshot(run)
    other = _chats(tmp_path / "other.jsonl", 8, word="Reply")

    changed = run_cli("train", str(other), "--resume", "--out", str(run), "--lr", "1e-2", "--lora-r", "8",
                      "--seed", "7", "--batch-size", "3", "--model", str(tmp_path), "--no-progress")
    assert changed.returncode != 0
    for expected in ("--lr 0.01 (saved: 0.005)", "--lora-r 8 (saved: 4)", "--seed 7 (saved: 42)",
                     "--batch-size 3 (saved: 2)", f"--model {tmp_path} (saved: {tiny})",
                     f"DATA {other} (saved: {data})"):
        assert expected in changed.stderr, (expected, changed.stderr)
    assert "Traceback" not in changed.stderr

    shorter = run_cli("train", "--resume", "--out", str(run), "--epochs", "1", "--no-progress")
    assert shorter.returncode != 0
    assert "--epochs 1 (saved: 2)" in shorter.stderr and "only be made longer" in shorter.stderr
    assert _snapshot(run) == before  # nothing in the run was touched


def test_resume_with_more_epochs_continues_from_the_runs_own_data(tiny, tmp_path):
    data = _chats(tmp_path / "d.jsonl", 8)
    run = tmp_path / "run"
    _train(tiny, data, run, epochs=1)
    before = _snapshot(run)
    info_before = json.loads((run / "run.json").read_text())
    _chats(data, 20, word="Changed")  # the original file changes after training; the run keeps its own copy

    # Options equal to the saved ones are not changes; --epochs 3 makes the run longer.
    # --compile decides how fast the same steps run, so it may change too.
    resumed = run_cli("train", "--resume", "--out", str(run), "--lr", "5e-3", "--lora-r", "4", "--epochs", "3",
                      "--compile", "off", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "--epochs 3 (saved: 1)" in resumed.stderr and "--compile off (saved: auto)" in resumed.stderr
    for name in ("data/train.jsonl", "data/val.jsonl"):
        assert (run / name).read_bytes() == before[name], name
    info = json.loads((run / "run.json").read_text())
    for field in ("base_model", "examples", "supervised_tokens", "default_system", "stop_token_ids", "method"):
        assert info[field] == info_before[field], field
    # 6 train chats, the two facts left with one phrasing each trained twice (--fact-balance): 8 / batch 2 = 4 steps
    assert info["status"] == "complete" and info["steps"] == 12 and info["examples"]["train"] == 8
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert "epochs: 3" in (run / "config.yaml").read_text()
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() != before["adapter/adapter_model.safetensors"]


def test_a_run_saved_before_neftune_keep_best_noise_balance_and_lora_plus_resumes_with_them_off(tiny, tmp_path):
    data = _chats(tmp_path / "d.jsonl", 8)
    run = tmp_path / "run"
    _train(tiny, data, run, 1, "--lora-plus", "1", "--digit-weight", "1")  # as runs trained before they existed
    config = run / "config.yaml"
    lines = config.read_text().splitlines()
    added = ("neftune:", "keep_best:", "patience:", "question_noise:", "fact_balance:", "lora_plus:", "digit_weight:")
    old = [line for line in lines if not line.startswith(added)]
    assert len(old) == len(lines) - len(added)
    config.write_text("\n".join(old) + "\n")  # as an older annotune wrote it
    resumed = run_cli("train", "--resume", "--out", str(run), "--epochs", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    text = config.read_text()
    assert "neftune: 0.0" in text and "keep_best: false" in text and "question_noise: 0.0" in text
    assert "fact_balance: 1" in text and "lora_plus: 1.0" in text and "digit_weight: 1.0" in text
    assert json.loads((run / "run.json").read_text())["best"] is None


def test_resume_without_a_complete_checkpoint_says_so_and_touches_nothing(tiny, tmp_path):
    data = _chats(tmp_path / "d.jsonl", 8)
    run = tmp_path / "run"
    _train(tiny, data, run, epochs=1)
    stray = tmp_path / "stray"
    shutil.copytree(run, stray)
    shutil.rmtree(run / "checkpoints")  # e.g. deleted by hand to save space
    before = _snapshot(run)
    resumed = run_cli("train", "--resume", "--out", str(run), "--epochs", "2", "--no-progress")
    assert resumed.returncode != 0
    assert f"--resume: {run} has no complete checkpoint; start it again with --overwrite" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert _snapshot(run) == before  # refused before anything was written (run.json's "updated" included)

    # A run.json that records no base model (as a run killed before its set-up files were written leaves it)
    info = json.loads((stray / "run.json").read_text())
    del info["base_model"]
    (stray / "run.json").write_text(json.dumps(info))
    resumed = run_cli("train", "--resume", "--out", str(stray), "--no-progress")
    assert resumed.returncode != 0 and "Traceback" not in resumed.stderr
    assert f"--resume: {stray} has no complete checkpoint; start it again with --overwrite" in resumed.stderr
