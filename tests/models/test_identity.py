"""A run records its base model by identity: it loads from any folder, and a moved or changed base is a clear
error instead of a silently different model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import run_cli, write_chats

from annotune.errors import ModelLoadError
from annotune.generation.loading import load_engine


@pytest.fixture
def relative_run(tiny, tmp_path):
    """A LoRA run trained with a relative --model path, as users type it."""
    work = tmp_path / "work"
    shutil.copytree(tiny, work / "models" / "tiny")
    write_chats(work / "chats.jsonl", [("Hi?", "Hello."), ("Bye?", "Goodbye.")])
    result = run_cli("train", "chats.jsonl", "--model", "models/tiny", "--out", "run", "--epochs", "1",
                     "--val-size", "0", "--no-progress", cwd=work)
    assert result.returncode == 0, result.stderr
    return work


def test_a_run_loads_from_any_folder(relative_run, tmp_path, monkeypatch):
    base = json.loads((relative_run / "run" / "run.json").read_text())["base_model"]
    assert base["path"] == str((relative_run / "models" / "tiny").resolve()) and len(base["sha256"]) == 64
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with load_engine(str(relative_run / "run")) as engine:
        assert engine.generate("run", [[{"role": "user", "content": "Hi?"}]])[0].completion_tokens > 0
    result = run_cli("chat", str(relative_run / "run"), "--prompt", "Hi?", "--max-new-tokens", "3", cwd=elsewhere)
    assert result.returncode == 0, result.stderr


def test_a_moved_base_model_is_named(relative_run):
    (relative_run / "models" / "tiny").rename(relative_run / "models" / "moved")
    with pytest.raises(ModelLoadError, match="trained on the base model at .*models/tiny, which is not there"):
        load_engine(str(relative_run / "run"))


def test_a_changed_base_model_is_refused(relative_run):
    from safetensors.torch import load_file, save_file

    weights = relative_run / "models" / "tiny" / "model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + torch.ones_like(tensors[name])
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="has changed since .* was trained on it"):
        load_engine(str(relative_run / "run"))
