"""Resolve a model reference and load its tokenizer and weights.

A reference is one of: the embedded default (``smollm2-135m``), a local folder in Hugging Face layout, a
``.gguf`` file, or a Hugging Face hub id (``EleutherAI/pythia-160m``). Run folders are resolved by
:class:`annotune.runs.RunFolder`, which reads the base model's recorded identity from the run itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from annotune.errors import ModelLoadError
from annotune.models import embedded
from annotune.runs import is_run_dir

log = logging.getLogger(__name__)

EMBEDDED_DEFAULT = embedded.EMBEDDED_NAME
_EMBEDDED_ALIASES = {EMBEDDED_DEFAULT, "default", "embedded", "smollm2-135m-instruct"}


@dataclass(frozen=True)
class ModelRef:
    """What the user named (``ref``), what kind it is, and where its files are (``path``)."""

    ref: str
    kind: str  # embedded | folder | gguf | hub
    path: str  # a local folder for embedded/folder/gguf, the hub id for hub
    revision: str | None = None  # hub models: the commit to load (recorded by training)


def resolve_model(ref: str) -> ModelRef:
    """Turn a user's model reference into a loadable location, converting GGUF files once."""
    if ref.lower() in _EMBEDDED_ALIASES:
        return ModelRef(ref, "embedded", str(embedded.embedded_model_dir()))
    path = Path(ref).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelLoadError(f"{path}: not a GGUF file (it does not start with the GGUF signature); "
                                     "check the download, or convert the model to GGUF again")
        return ModelRef(ref, "gguf", str(embedded.gguf_to_folder(path, embedded.gguf_cache_dir(path))))
    if path.is_dir():
        if is_run_dir(path):
            raise ModelLoadError(f"{path} is an annotune run folder (a tuned model): use it with `annotune chat` or "
                                 "`annotune generate`; to train again, pass a base model with --model (the run's "
                                 "run.json names the one it was trained from)")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} has no config.json; point --model at a folder saved with save_pretrained, "
                "a .gguf file, a hub id, or the embedded default 'smollm2-135m'"
            )
        return ModelRef(ref, "folder", str(path.resolve()))
    if path.is_file():
        raise ModelLoadError(f"{path} is a file, not a model: pass a model folder (saved with save_pretrained), a "
                             "run folder, a .gguf file, a hub id, or the embedded default 'smollm2-135m'")
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelLoadError(f"model folder not found: {path}")
    return ModelRef(ref, "hub", ref)


def _offline_hint(ref: str) -> str:
    return (
        f"could not load '{ref}' from the Hugging Face hub (offline, or no such model). On a machine with "
        f"access run `hf download {ref} --local-dir models/{ref.split('/')[-1]}`, copy that folder here and "
        f"pass --model models/{ref.split('/')[-1]}; or use a .gguf file or the embedded default 'smollm2-135m'"
    )


def _from_pretrained(loader, model: ModelRef, **kwargs):
    """Call a transformers loader; hub ids try the local cache first so offline machines answer fast."""
    if model.kind != "hub":
        return loader.from_pretrained(model.path, **kwargs)
    if model.revision:
        kwargs["revision"] = model.revision
    try:
        return loader.from_pretrained(model.path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise ModelLoadError(_offline_hint(model.ref)) from None
    try:
        return loader.from_pretrained(model.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{_offline_hint(model.ref)}\n  ({exc.__class__.__name__}: {exc})") from None


def load_tokenizer(model: ModelRef):
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: ModelRef, dtype=None, device: str | None = None):
    """Load a causal LM in fp32 (training keeps fp32 master weights and autocasts) unless ``dtype`` says."""
    import torch
    from transformers import AutoModelForCausalLM

    model_obj = _from_pretrained(AutoModelForCausalLM, model, dtype=dtype or torch.float32)
    if getattr(model_obj, "is_quantized", False):
        raise ModelLoadError(f"{model.ref} is quantised; pass a full-precision model or a .gguf file")
    if device:
        model_obj.to(device)
    return model_obj
