"""Through the real CLI: a run killed with SIGKILL resumes to the same result, and DDP over 2 CPU processes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import BIN, run_cli, write_chats


def _final_val_loss(run: Path) -> float:
    return json.loads((run / "run.json").read_text())["final"]["val_loss"]


def _train_args(tiny, data, out, *extra):
    return ["train", str(data), "--model", str(tiny), "--out", str(out), "--lora-r", "4", "--lora-alpha", "8",
            "--batch-size", "2", "--lr", "5e-3", "--val-size", "2", "--no-progress", *extra]


def _paraphrased(path: Path, n: int) -> Path:
    """Two questions per answer: the validation split takes phrasings of facts that stay in training."""
    return write_chats(path, [(f"Question {i}?", f"Answer number {i // 2}.") for i in range(n)])


def test_resume_after_kill_9_matches_uninterrupted_run(tiny, tmp_path):
    data = _paraphrased(tmp_path / "d.jsonl", 8)
    # No early stop, so the run is surely still going at the kill; the best epoch is still tracked and saved.
    epochs = ["--epochs", "60", "--save-every", "5", "--lora-dropout", "0.1", "--patience", "0"]
    reference = tmp_path / "reference"
    done = run_cli(*_train_args(tiny, data, reference, *epochs))
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "annotune"), *_train_args(tiny, data, killed, *epochs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed / "checkpoints").glob("step-*")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "run.json").read_text())["status"] == "training", "run ended before the kill"
    steps_before = len((killed / "metrics.jsonl").read_text().splitlines())

    resumed = run_cli("train", "--resume", "--out", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert abs(_final_val_loss(killed) - _final_val_loss(reference)) < 1e-3
    best, best_again = (json.loads((run / "run.json").read_text())["best"] for run in (reference, killed))
    assert best["epoch"] == best_again["epoch"] and abs(best["val_loss"] - best_again["val_loss"]) < 1e-3
    assert not (killed / "best.pt").exists()
    rows = [json.loads(r) for r in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # no duplicated or missing steps
    assert len(rows) > steps_before


def test_two_process_ddp_matches_single_process_gradient_accumulation(tiny, tmp_path):
    data = _paraphrased(tmp_path / "d.jsonl", 10)
    single = tmp_path / "single"
    # No NEFTune: its noise is random per process (like dropout), so the two layouts would draw different noise.
    one = run_cli(*_train_args(tiny, data, single, "--epochs", "3", "--grad-accum", "2", "--neftune", "0"))
    assert one.returncode == 0, one.stderr

    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node=2", "--master_port=29533", "--no-python",
                          str(BIN / "annotune"), *_train_args(tiny, data, ddp, "--epochs", "3", "--neftune", "0")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    single_rows = [json.loads(r) for r in (single / "metrics.jsonl").read_text().splitlines()]
    ddp_rows = [json.loads(r) for r in (ddp / "metrics.jsonl").read_text().splitlines()]
    # 8 train chats, the 2 facts whose other phrasing went to validation trained twice: 10 chats / 2 per micro-batch
    # = 5 micro-batches, 2 per step (the last step has one, the other process a weight-0 repeat) = 3 steps x 3 epochs
    assert len(single_rows) == len(ddp_rows) == 9
    for a, b in zip(single_rows, ddp_rows):
        assert abs(a["loss"] - b["loss"]) < 1e-4
    assert abs(_final_val_loss(single) - _final_val_loss(ddp)) < 1e-4
    assert (ddp / "adapter" / "adapter_model.safetensors").is_file()


def test_only_the_main_process_logs_warnings(monkeypatch):
    """Every DDP process reads the same data, so a warning about it (e.g. a short validation split) shows once."""
    import logging

    from annotune.train.distributed import setup

    split_log = logging.getLogger("annotune.dataset.split")
    parent = logging.getLogger("annotune")
    before = parent.level
    try:
        monkeypatch.setenv("RANK", "0")
        setup()
        assert split_log.isEnabledFor(logging.WARNING)
        monkeypatch.setenv("RANK", "1")
        setup()
        assert not split_log.isEnabledFor(logging.WARNING) and split_log.isEnabledFor(logging.ERROR)
    finally:
        parent.setLevel(before)
