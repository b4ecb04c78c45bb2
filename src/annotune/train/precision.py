"""Choosing bf16 autocast or fp32."""

from __future__ import annotations

import contextlib

import torch

from annotune.errors import AnnotuneError


def cpu_has(*flags: str) -> bool:
    """True where the CPU reports any of ``flags`` (``/proc/cpuinfo``; False where there is none)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f" {flag}" in text for flag in flags)


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AMX or AVX-512 BF16)."""
    return cpu_has("amx_bf16", "avx512_bf16")


def resolve_precision(requested: str, device: str) -> str:
    if device.startswith("cuda"):
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = cpu_supports_bf16()
    if requested == "auto":
        return "bf16" if supported else "fp32"
    if requested == "bf16" and not supported and device.startswith("cuda"):
        raise AnnotuneError("--precision bf16: this GPU has no bf16 support; use --precision fp32")
    return requested


def autocast(precision: str, device: str):
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
