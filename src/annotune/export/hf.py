"""The Hugging Face formats: the LoRA merged into the base's full-precision weights (`hf`), or the adapter alone
(`adapter`). Both carry the run's tokenizer, its training chat template and a generation_config.json whose
``eos_token_id`` lists every stop token, so transformers and vLLM stop where annotune does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from annotune.errors import ExportError
from annotune.runs import RunFolder

DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
BYTES_PER_DTYPE = {"f32": 4, "bf16": 2, "f16": 2}
_TOKENIZER_CONFIG = "tokenizer_config.json"


def load_merged(run: RunFolder):
    """The tuned model in fp32: the base's own weights with the adapter merged in (never quantised weights)."""
    import torch

    from annotune.generation.loading import merged_model

    model = merged_model(run.base(), run.adapter_dir, dtype=torch.float32)
    _check_tied(model)
    return model.eval()


def _check_tied(model) -> None:
    config = model.config.get_text_config()
    if not getattr(config, "tie_word_embeddings", False):
        return
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if out is not None and out.weight.data_ptr() != emb.weight.data_ptr():
        raise ExportError("the base model ties its output layer to its embeddings, but after merging the adapter "
                          "they differ (the adapter trained one of them); train again without lm_head or "
                          "embed_tokens in --lora-targets, or export --format adapter")


def parameter_bytes(model, dtype: str) -> int:
    """What the weights take on disk in ``dtype`` (tied matrices counted once)."""
    return model.num_parameters() * BYTES_PER_DTYPE[dtype]


def write_merged(run: RunFolder, model, out: Path, dtype: str) -> None:
    """Save ``model`` (the merged run) in ``dtype`` as safetensors, with the run's tokenizer and stop tokens."""
    import torch

    model = model.to(getattr(torch, DTYPES[dtype]))
    model.config.eos_token_id = stop_ids(run)[0]
    model.generation_config.eos_token_id = stop_ids(run)
    model.save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    write_tokenizer(run, out)


def write_adapter(run: RunFolder, out: Path) -> tuple[dict, int]:
    """Copy the PEFT adapter, pointing its config at the exact base; returns the base reference written and the
    adapter's rank."""
    if run.adapter_dir is None:
        raise ExportError(f"{run.path} is a full fine-tune (no adapter); export it with --format hf or gguf")
    out.mkdir(parents=True, exist_ok=True)
    for file in run.adapter_dir.iterdir():
        if file.is_file() and file.name != "README.md":
            shutil.copy2(file, out / file.name)
    base = base_reference(run)
    config_file = out / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = base["load"]
    config["revision"] = base.get("revision")
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    write_tokenizer(run, out)
    _write_generation_config(run, out)
    return base, config["r"]


def base_reference(run: RunFolder) -> dict:
    """How to load the base elsewhere: ``load`` (a hub id or an absolute folder), its identity, a revision."""
    model = run.base()
    recorded = run.info.get("base_model", {})
    reference = {"load": model.path, "kind": model.kind, "label": run.base_label()}
    if model.revision:
        reference["revision"] = model.revision
    if recorded.get("sha256"):
        reference["sha256"] = recorded["sha256"]
    return reference


def write_tokenizer(run: RunFolder, out: Path) -> None:
    """The run's tokenizer, with the training chat template as chat_template.jinja (the file itself, byte for
    byte, so every engine that reads it renders what training rendered)."""
    tokenizer = run.tokenizer()
    tokenizer.save_pretrained(out)
    template = run.path / "chat_template.jinja"
    if template.is_file():
        shutil.copyfile(template, out / "chat_template.jinja")
    config_file = out / _TOKENIZER_CONFIG
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)  # the .jinja file is the one template
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def _write_generation_config(run: RunFolder, out: Path) -> None:
    tokenizer = run.tokenizer()
    config = {"eos_token_id": stop_ids(run), "pad_token_id": tokenizer.pad_token_id,
              "bos_token_id": tokenizer.bos_token_id}
    (out / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")


def stop_ids(run: RunFolder) -> list[int]:
    """The run's stop tokens, the tokenizer's EOS first (the one engines that take a single id use)."""
    from annotune.models.templates import stop_token_ids

    tokenizer = run.tokenizer()
    ids = run.stop_ids or stop_token_ids(tokenizer)
    return sorted(ids, key=lambda i: i != tokenizer.eos_token_id)
