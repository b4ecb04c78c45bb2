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
    layers = top_layers(model, cfg.lora_layers)
    if layers is not None and target_modules == "all-linear":  # PEFT takes a layer list only with named modules
        target_modules = linear_names(model)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target_modules, task_type="CAUSAL_LM", bias="none",
                      layers_to_transform=layers)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        from annotune.errors import AnnotuneError

        raise AnnotuneError(f"--lora-targets {targets}: {exc}") from None
    replace_lora_dropout(model)
    return model


def top_layers(model, share: float) -> list[int] | None:
    """The indices of the top ``share`` of the model's decoder layers (None: all of them)."""
    if share >= 1:
        return None
    count = model.config.num_hidden_layers
    return list(range(count - max(1, round(share * count)), count))


def linear_names(model) -> list[str]:
    """The names of the model's linear layers (the last part of each path), without the output head."""
    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


class LoraDropout(torch.nn.Module):
    """Dropout for a LoRA adapter's input that draws its mask from 16 random bits per element.

    On CPU torch's dropout draws one Bernoulli sample per element, and with LoRA on every linear layer that sampling
    took a fifth of a training step's CPU time (docs/benchmarks.md). Here one 64-bit draw gives the bits of four
    elements, so p is rounded to a multiple of 1/65536. The mask comes from torch's global generator, as
    nn.Dropout's does, so a seed and a resumed run's saved generator state decide it. Backward keeps only the
    boolean mask. Other devices keep torch's fused dropout.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True)
        return _MaskedScale.apply(x, keep_mask(x.shape, self.p), 1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(shape, p: float) -> torch.Tensor:
    """A boolean CPU mask of `shape` whose elements are True with probability 1 - p (to 1/65536)."""
    n = math.prod(shape)
    words = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    return words.view(torch.int16)[:n].view(shape) >= round(p * 65536) - 32768


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def replace_lora_dropout(model) -> int:
    """Put LoraDropout in place of PEFT's nn.Dropout on every adapter input (same p). Returns how many changed."""
    changed = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in drops.items():
            if type(drop) is torch.nn.Dropout and drop.p > 0:
                drops[name] = LoraDropout(drop.p)
                changed += 1
    return changed


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
