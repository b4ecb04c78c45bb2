"""Routing: the tuned adapter for questions like the run's training questions, the base model for everything else.

A LoRA run learns its domain and forgets some of what the base model knew; replay (train/replay.py) slows that
down but does not stop it. The base weights are still there, under the adapter, so a request that looks nothing
like the training data can be answered by them, exactly as the base model would. The router decides per request,
before its prompt is prefilled: the base model's hidden state at 80% of its depth, averaged over the request's
user text, is compared (cosine, after standardising each dimension by the mean and spread of both sets) with the
same vector of every training question and of every everyday prompt that ships with annotune
(``train/replay_prompts.jsonl``, which shares no question with evaluate's probe). The nearer set decides; there is
no threshold to tune. Training writes the router beside the adapter (``router.safetensors``); `serve`, `chat` and
`evaluate` use it unless told ``--no-routing``. An exported model merges the adapter into every weight and cannot
route.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from annotune.generation.batch import length_groups
from annotune.runs import ROUTER_FILE

DEPTH = 0.8  # which hidden layer, as a share of the model's depth
MAX_TOKENS = 256  # a request's user text, its last tokens, is what the router reads
MAX_DOMAIN = 2048  # training questions kept in the router (a random sample of larger data sets)
BATCH_TOKENS = 4096


@dataclass
class Router:
    layer: int
    centre: torch.Tensor  # [hidden]
    domain: torch.Tensor  # [n_domain, hidden], standardised and unit length
    general: torch.Tensor  # [n_general, hidden], standardised and unit length
    scale: torch.Tensor | None = None  # [hidden], each dimension's spread (None: a router saved before it existed)

    def tuned(self, vectors: torch.Tensor) -> list[bool]:
        """For each pooled hidden state: True where its nearest neighbour is a training question."""
        v = _unit(vectors, self.centre, self.scale)
        return ((v @ self.domain.T).amax(1) >= (v @ self.general.T).amax(1)).tolist()

    def save(self, run_dir: Path) -> None:
        from safetensors.torch import save_file

        tensors = {"centre": self.centre, "domain": self.domain.half(), "general": self.general.half()}
        if self.scale is not None:
            tensors["scale"] = self.scale
        save_file(tensors, str(run_dir / ROUTER_FILE), metadata={"layer": str(self.layer)})

    @classmethod
    def load(cls, path: Path) -> Router:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            layer = int(f.metadata()["layer"])
            tensors = {k: f.get_tensor(k).float() for k in f.keys()}
        return cls(layer, tensors["centre"], tensors["domain"], tensors["general"], tensors.get("scale"))


def _unit(vectors: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Pooled hidden states as the router compares them: each dimension centred and divided by its spread (a few
    dimensions of a decoder's hidden state are far larger than the rest and would decide alone), then unit
    length."""
    v = vectors.float() - centre
    return F.normalize(v / scale if scale is not None else v, dim=-1)


def router_layer(config) -> int:
    """The hidden state the router reads: ``hidden_states[layer]`` (0 is the embeddings)."""
    config = getattr(config, "get_text_config", lambda: config)()
    return max(1, round(DEPTH * config.num_hidden_layers))


def user_text(messages) -> str:
    """What the router reads of a conversation: its user turns, in order (dicts or conversation messages)."""
    turns = [(m["role"], m["content"]) if isinstance(m, dict) else (m.role, m.content) for m in messages]
    return "\n".join(content for role, content in turns if role == "user")


def route_ids(tokenizer, messages) -> list[int] | None:
    """The token ids the router reads (the user text's last :data:`MAX_TOKENS`); None when there is no user text."""
    text = user_text(messages)
    if not text.strip():
        return None
    return tokenizer.encode(text, add_special_tokens=False)[-MAX_TOKENS:]


class _Reached(Exception):
    """Raised by the hook on the layer whose output the router reads: the layers above it are not run."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


def pooled(model, id_lists: list[list[int]], layer: int, pad: int, device: str,
           forward: dict | None = None) -> torch.Tensor:
    """The mean hidden state at ``layer`` over each id list's tokens, [n, hidden] in fp32; ``forward``: more
    arguments for the model's forward (none may be per row). The layers above ``layer`` are not run."""
    out: dict[int, torch.Tensor] = {}
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT's wrapper
    body = inner.get_decoder() if hasattr(inner, "get_decoder") else inner  # no LM head: only hidden states
    stop = _stop_after(body, layer)
    try:
        with torch.inference_mode():
            for batch in length_groups(range(len(id_lists)), [len(ids) for ids in id_lists], BATCH_TOKENS):
                width = max(len(id_lists[i]) for i in batch)
                ids = torch.tensor([id_lists[i] + [pad] * (width - len(id_lists[i])) for i in batch], device=device)
                mask = torch.tensor([[1] * len(id_lists[i]) + [0] * (width - len(id_lists[i])) for i in batch],
                                    device=device)
                try:
                    hidden = body(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False,
                                  **(forward or {})).hidden_states[layer]
                except _Reached as reached:
                    hidden = reached.hidden
                weights = mask.unsqueeze(-1).float()
                out.update(zip(batch, ((hidden.float() * weights).sum(1) / weights.sum(1)).cpu()))
    finally:
        if stop is not None:
            stop.remove()
    return torch.stack([out[i] for i in range(len(id_lists))])


def _stop_after(body, layer: int):
    """A hook that ends the forward with ``hidden_states[layer]``, the output of decoder layer ``layer - 1``,
    where the body keeps its layers in one list of ``num_hidden_layers`` and ``layer`` is not the last (whose
    hidden state is the final norm's); None (the whole forward runs) otherwise."""
    layers = next((getattr(body, name) for name in ("layers", "h") if hasattr(body, name)), None)
    count = getattr(getattr(body, "config", None), "num_hidden_layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != count or not 0 < layer < count:
        return None

    def reached(module, args, output):
        raise _Reached(output[0] if isinstance(output, tuple) else output)

    return layers[layer - 1].register_forward_hook(reached)


def build(model, tokenizer, domain_convs, general_prompts: list[str], device: str = "cpu", seed: int = 0) -> Router:
    """A router from the training conversations (each prefix of a multi-turn chat's user turns counts, as a
    follow-up question is asked with the turns before it) and the everyday prompts. ``model`` must answer as the
    base model (a PEFT model inside ``disable_adapter()``)."""
    texts = []
    for conv in domain_convs:
        users = [m for m in conv.messages if m.role == "user"]
        texts += [users[:k] for k in range(1, len(users) + 1)]
    domain_ids = sorted({tuple(ids) for ids in (route_ids(tokenizer, t) for t in texts) if ids})
    if len(domain_ids) > MAX_DOMAIN:
        domain_ids = random.Random(seed).sample(domain_ids, MAX_DOMAIN)
    general_ids = [tokenizer.encode(p, add_special_tokens=False)[-MAX_TOKENS:] for p in general_prompts]
    layer = router_layer(model.config)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    vectors = pooled(model, [list(ids) for ids in domain_ids] + general_ids, layer, pad, device)
    centre, scale = vectors.mean(0), vectors.std(0).clamp_min(1e-6)
    unit = _unit(vectors, centre, scale)
    return Router(layer, centre, unit[:len(domain_ids)], unit[len(domain_ids):], scale)
