"""From model references (run folders, hub ids, folders, GGUF files, the embedded default) to engines.

References that share a base model share one engine and one copy of its weights: a single LoRA run is merged
into the base (fastest), several runs keep their adapters apart and each request picks its own. A reference may
be given a name with ``NAME=REF``; otherwise a run is named after its folder and a base model after itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from annotune.errors import AnnotuneError
from annotune.generation.engine import Engine, ServedModel
from annotune.models.loading import ModelRef, load_model, load_tokenizer, resolve_model
from annotune.runs import RunFolder, is_run_dir

log = logging.getLogger(__name__)
INVERSE = "inverse"  # the adapter that takes a merged run's update back out (routed requests)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Spec:
    """One reference, resolved: what to call it, where its weights are, and how it talks."""

    name: str
    base: ModelRef
    tokenizer: Any
    stop_ids: list[int]
    system: str | None = None
    adapter_dir: Path | None = None
    parent: str | None = None
    router: Path | None = None  # a LoRA run's router.safetensors (generation/routing.py)


def split_name(text: str) -> tuple[str | None, str]:
    """``NAME=REF`` -> (NAME, REF); a plain reference -> (None, REF)."""
    name, sep, ref = text.partition("=")
    if sep and name and "/" not in name and not Path(text).exists():
        return name, ref
    return None, text


def describe(text: str) -> Spec:
    """Resolve one reference (checks only; no weights are loaded)."""
    from annotune.models.templates import stop_token_ids

    name, ref = split_name(text)
    path = Path(ref).expanduser()
    if is_run_dir(path):
        run = RunFolder(path)
        run.require_complete()
        tokenizer = run.tokenizer()
        return Spec(name or run.name, run.base(), tokenizer, run.stop_ids or stop_token_ids(tokenizer),
                    run.default_system, run.adapter_dir, run.base_label(), run.router_file)
    base = resolve_model(ref)
    return base_spec(base, name or (path.name if base.kind in ("folder", "gguf") else ref))


def base_spec(base: ModelRef, name: str) -> Spec:
    """A resolved base model, served as it is under ``name``."""
    from annotune.models.templates import ensure_chat_template, stop_token_ids

    tokenizer = load_tokenizer(base)
    ensure_chat_template(tokenizer)
    return Spec(name, base, tokenizer, stop_token_ids(tokenizer))


def unique_names(specs: list[Spec]) -> list[Spec]:
    """``specs``, refused when two would answer to the same name."""
    names = [s.name for s in specs]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise AnnotuneError(f"two models would be called {clash[0]!r}; name them apart with NAME=PATH")
    return specs


def load_engines(refs: list[str | Spec], device: str | None = None, dtype: str = "fp32",
                 max_model_len: int | None = None, routing: bool = True, **engine_options) -> list[Engine]:
    """One engine per distinct base model among ``refs`` (references, or specs from :func:`describe`); model
    names are unique across all of them. With ``routing``, a run that has a router answers requests unlike its
    training questions with the base weights (generation/routing.py); without, the adapter answers everything."""
    from annotune.models.identity import same_base

    specs = unique_names([ref if isinstance(ref, Spec) else describe(ref) for ref in refs])
    groups: list[list[Spec]] = []
    for spec in specs:
        group = next((g for g in groups if same_base(g[0].base, spec.base)), None)
        group.append(spec) if group else groups.append([spec])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return [_build(group, device, DTYPES[dtype], max_model_len, routing, engine_options) for group in groups]


def load_engine(ref: str | Spec | list[str | Spec], **options) -> Engine:
    """The engine for one reference (or several on one base model)."""
    engines = load_engines(ref if isinstance(ref, list) else [ref], **options)
    if len(engines) > 1:
        raise AnnotuneError("these models have different base models; load them as separate engines")
    return engines[0]


def merged_model(base: ModelRef, adapter_dir: Path | None, dtype=torch.float32, device: str = "cpu"):
    """The base weights, loaded in full precision (``dtype``), with a run's LoRA adapter merged into them: what one
    run is served with, and what `annotune export` writes."""
    model = load_model(base, dtype=dtype, device=device)
    if adapter_dir is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().to(device)


def _build(specs: list[Spec], device: str, dtype, max_model_len: int | None, routing: bool,
           options: dict) -> Engine:
    from annotune.generation.routing import Router

    internal: dict[str, str | None] = {s.name: None for s in specs}
    untuned: dict[str, str | None] = {}  # a routed run's way back to the base weights (None: PEFT's __base__)
    routers = {s.name: Router.load(s.router) for s in specs if routing and s.router is not None}
    if len(specs) == 1:  # one run alone: merged weights answer fastest
        model = merged_model(specs[0].base, specs[0].adapter_dir, dtype, device)
        if routers:  # and the requests routed to the base model take the adapter back out
            model = _with_inverse(model, specs[0].adapter_dir, device)
            untuned[specs[0].name] = INVERSE
    else:
        from peft import PeftModel

        model = load_model(specs[0].base, dtype=dtype, device=device)
        for i, spec in enumerate(s for s in specs if s.adapter_dir is not None):
            internal[spec.name] = f"run{i}"
            if i == 0:
                model = PeftModel.from_pretrained(model, spec.adapter_dir, adapter_name="run0")
            else:
                model.load_adapter(spec.adapter_dir, adapter_name=f"run{i}")
        model.to(device)
    context = _context_length(model.config, max_model_len)
    served = {s.name: ServedModel(s.name, s.tokenizer, frozenset(s.stop_ids), context, internal[s.name], s.system,
                                  s.parent, routers.get(s.name), untuned.get(s.name)) for s in specs}
    return Engine(model.eval(), served, device=device, **options)


def _with_inverse(merged, adapter_dir: Path, device: str):
    """``merged`` (base + the LoRA update) with the same adapter loaded again with its B matrices negated: rows that
    use it get base + update - update, the base model's answer, while every other row runs on the merged weights
    at full speed."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(merged, adapter_dir, adapter_name=INVERSE)
    with torch.no_grad():
        for module in model.modules():
            lora_b = getattr(module, "lora_B", None)
            if lora_b is not None and INVERSE in lora_b:
                lora_b[INVERSE].weight.neg_()
    return model.to(device)


def _context_length(config, cap: int | None) -> int:
    config = getattr(config, "get_text_config", lambda: config)()
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return min(value, cap) if cap else value
    return cap or 2048
