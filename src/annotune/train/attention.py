"""Attention over a packed row at the cost of its conversations, not of the row.

transformers keeps the conversations of a packed row apart with a block-diagonal mask over the whole row, so SDPA
computes (row length)^2 scores, most of them masked, and on a CPU its fused kernel's masked backward is slow. Here
the row's conversations are laid out in a [conversations, longest] grid, each padded at its end, and attend with
the plain causal rule, which also hides every padding key from every real query: conversations x longest^2 scores,
no mask. With 8 conversations of about 60 tokens one layer's attention (forward and backward) takes about a quarter
of the masked kernel's time (docs/benchmarks.md).

The grid is used only for the architectures listed in ``ARCHITECTURES``, when the caller passes ``packed_segments``
(the training loop, for rows it packed itself) and when the grid is smaller than the row (one long conversation
among short ones is cheaper through the mask) or the row holds its conversations' shared start once, which only the
grid can lay out; every other call is transformers' own SDPA with the mask transformers built. The model is switched
back to SDPA before anything is saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from annotune.errors import TrainingError
from annotune.train.model_setup import base_model

NAME = "annotune_packed"
# Architectures whose attention passes nothing the grid would drop (tests/train/test_attention.py); any other keeps
# SDPA's mask. A call that carries something that changes attention itself also goes there.
ARCHITECTURES = frozenset({"llama", "qwen2", "gpt_neox"})
ALTERING_KWARGS = frozenset({"softcap", "position_bias", "s_aux", "sinks", "sparse_indices", "attention_chunk_size",
                             "cu_seq_lens_q", "cu_seq_lens_k"})
# Above this many scores per layer the fused (memory-saving) kernel runs on the grid; below it the unfused one, whose
# backward is about twice as fast on short rows. 2**23 fp32 scores is 32 MiB a layer kept for backward.
UNFUSED_LIMIT = 2**23


@dataclass
class Segments:
    """Where a packed row's tokens sit in the [count, width] grid (flattened), for ``packed_attention``.

    ``slots[t]`` is the grid slot whose output is token t's; ``source[s]`` the token each slot holds (padding at a
    row's end holds token 0, which no real query sees under the causal rule). A conversation may begin with tokens
    the one before it in the row holds already (``batching.pack``): its grid row then starts with those, computed
    once, and their gradients from every row add up where they were computed. ``shared`` counts such tokens.
    """

    slots: torch.Tensor  # [tokens]
    source: torch.Tensor  # [count * width]
    count: int
    width: int
    shared: int = 0

    @classmethod
    def of(cls, lengths: list[int], shared: list[int] | None = None) -> "Segments":
        """The grid of conversations of ``lengths`` tokens, of which the first ``shared[i]`` of conversation i are
        the previous conversation's and in the row only once."""
        shared = shared or [0] * len(lengths)
        width = max(lengths)
        slots, source, offset, previous = [], [], 0, torch.zeros(0, dtype=torch.long)
        for i, (n, common) in enumerate(zip(lengths, shared)):
            row = torch.cat([previous[:common], torch.arange(offset, offset + n - common)])
            slots.append(torch.arange(common, n) + i * width)
            source += [row, torch.zeros(width - n, dtype=torch.long)]
            offset, previous = offset + n - common, row
        return cls(torch.cat(slots), torch.cat(source), len(lengths), width, sum(shared))

    def to(self, device) -> "Segments":
        return Segments(self.slots.to(device, non_blocking=True), self.source.to(device, non_blocking=True),
                        self.count, self.width, self.shared)


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     packed_segments: Segments | None = None, **kwargs):
    """An AttentionInterface function: the grid when given ``packed_segments`` and it is cheaper than the row or
    the row shares a start, transformers' SDPA (with the mask transformers built) otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seg = packed_segments
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    unsupported = (seg is None or query.shape[0] != 1 or key.shape[2] != query.shape[2]
                   or any(kwargs.get(name) is not None for name in ALTERING_KWARGS)
                   or kwargs.get("is_causal") is False or not getattr(module, "is_causal", True)
                   or (window is not None and seg.width > window))
    if unsupported and seg is not None and seg.shared:  # the mask cannot see a start shared by every conversation
        raise TrainingError("a packed row with a shared start reached attention that cannot lay it out; "
                            "train with --batch-size 1, or report this model's architecture")
    # one long chat among short ones is cheaper through the row's mask, unless the row shares a start
    if unsupported or (not seg.shared and seg.count * seg.width**2 >= query.shape[2] ** 2):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    return _grid_attention(query, key, value, seg, dropout, scaling), None


def _grid_attention(query, key, value, seg: Segments, dropout: float, scaling) -> torch.Tensor:
    def grid(x):  # [1, heads, tokens, dim] -> [count, heads, width, dim]
        heads, dim = x.shape[1], x.shape[3]
        return x[0].index_select(1, seg.source).view(heads, seg.count, seg.width, dim).transpose(0, 1)

    heads = query.shape[1]
    gqa = key.shape[1] != heads
    if seg.count * heads * seg.width**2 <= UNFUSED_LIMIT:
        out = _unfused(grid(query), grid(key), grid(value), dropout, scaling, gqa)
    else:
        out = torch.nn.functional.scaled_dot_product_attention(
            grid(query), grid(key), grid(value), dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa)
    out = out.transpose(0, 1).reshape(heads, seg.count * seg.width, -1).index_select(1, seg.slots)
    return out.transpose(0, 1).unsqueeze(0).contiguous()  # [1, tokens, heads, dim], like SDPA's


def _unfused(query, key, value, dropout: float, scaling, gqa: bool) -> torch.Tensor:
    """SDPA's unfused ("math") kernel, called as ``F.scaled_dot_product_attention`` calls it under
    ``sdpa_kernel(SDPBackend.MATH)``, but as a plain op, which torch.compile's cache of traced graphs can hold (the
    backend switch it cannot). Like SDPA under autocast: the inputs cast to autocast's type once, then autocast off,
    so the kernel computes its scores and softmax in fp32 as it does for SDPA."""
    device = query.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    with torch.autocast(device, enabled=False):
        return torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)[0]


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # calls without segments get SDPA's own mask


def switch_on(model) -> bool:
    """Use ``packed_attention`` in a model of ``ARCHITECTURES`` that runs transformers' SDPA; False (unchanged) for
    any other model."""
    base = base_model(model)
    config = base.config
    if (config.model_type not in ARCHITECTURES or getattr(config, "_attn_implementation", None) != "sdpa"
            or not base._can_set_attn_implementation()):
        return False
    _register()
    base.set_attn_implementation(NAME)
    return True


def shares_starts(model) -> bool:
    """Whether packed rows may hold their conversations' common start once (``batching.pack``): the model
    attends through the grid (``switch_on``) and no layer has a sliding window, under which the grid may not
    be taken."""
    base = base_model(model)
    return (getattr(base.config, "_attn_implementation", None) == NAME
            and not any(getattr(m, "sliding_window", None) for m in base.modules()))


def switch_off(model) -> None:
    """Back to SDPA, so that nothing saved or generated afterwards names this implementation."""
    base = base_model(model)
    if getattr(base.config, "_attn_implementation", None) == NAME:
        base.set_attn_implementation("sdpa")
