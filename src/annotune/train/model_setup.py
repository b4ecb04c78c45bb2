"""Turning a loaded causal LM into a trainable one (LoRA or full), probing what it supports, saving it."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import torch

from annotune.config import TrainConfig


def make_trainable(model, cfg: TrainConfig):
    if cfg.method == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets
    target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target_modules, task_type="CAUSAL_LM", bias="none")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        from annotune.errors import AnnotuneError

        raise AnnotuneError(f"--lora-targets {targets}: {exc}") from None


@torch.no_grad()
def freeze_base_in_bf16(model) -> int:
    """Store the frozen weights of a LoRA model's linear layers in bf16 once, for bf16 training.

    Under bf16 autocast every linear layer casts its fp32 weight to bf16 on every forward; a frozen weight never
    changes, so casting it once gives the same numbers without the per-step copy (and halves its memory). Trainable
    weights (the adapters) stay fp32. A head tied to the input embedding gets its own bf16 copy: the embedding
    lookup keeps fp32, so the residual stream is exactly what autocast gives. Returns how many tensors changed.
    """
    changed = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or module.weight.requires_grad or module.weight.dtype != torch.float32:
            continue
        for name in ("weight", "bias"):
            param = getattr(module, name)
            if param is None or param.requires_grad:
                continue
            copy = param.detach().to(torch.bfloat16)  # a new tensor: a tied embedding keeps its fp32 storage
            setattr(module, name, torch.nn.Parameter(copy, requires_grad=False))
            changed += 1
    return changed


def add_embedding_noise(model, alpha: float):
    """NEFTune: uniform noise on the input embeddings while training, of size alpha / sqrt(length x width).

    The noise comes from torch's global generator, whose state checkpoints save, so a resumed run draws the same.
    Evaluation (model.eval()) and generation see no noise. Returns the hook's handle.
    """
    def hook(module, args, output):
        if not module.training:
            return output
        scale = alpha / math.sqrt(output.size(-2) * output.size(-1))
        return output + torch.empty_like(output).uniform_(-scale, scale)

    return model.get_input_embeddings().register_forward_hook(hook)


def base_model(model):
    """The transformers model under a PEFT wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def forward_parameters(model) -> set[str]:
    """The keyword arguments the (unwrapped) model's forward takes."""
    return set(inspect.signature(type(base_model(model)).forward).parameters)


def supports_logits_to_keep(model) -> bool:
    return "logits_to_keep" in forward_parameters(model)


@torch.no_grad()
def packing_supported(model, device: str) -> bool:
    """Whether packed rows stay isolated: the second of two packed sequences must match it run alone."""
    vocab = model.config.vocab_size
    a = torch.randint(3, vocab, (1, 5), generator=torch.Generator().manual_seed(0)).to(device)
    b = torch.randint(3, vocab, (1, 4), generator=torch.Generator().manual_seed(1)).to(device)
    was_training = model.training
    model.eval()
    alone = model(input_ids=b, position_ids=torch.arange(4, device=device)[None], use_cache=False).logits
    packed_ids = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(5), torch.arange(4)])[None].to(device)
    packed = model(input_ids=packed_ids, position_ids=positions, use_cache=False).logits[:, 5:]
    model.train(was_training)
    return torch.allclose(alone, packed, atol=1e-4, rtol=1e-3)


def save_weights(model, run_dir: Path, method: str) -> None:
    """LoRA: the PEFT adapter in adapter/. Full: the whole model in model/ (safetensors)."""
    if method == "lora":
        model.save_pretrained(run_dir / "adapter")
    else:
        model.save_pretrained(run_dir / "model")
