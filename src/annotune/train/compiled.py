"""Compiling the decoder layers (``torch.compile``) for long CPU runs.

On a CPU a LoRA step of a small model is mostly not its matrix products: each decoder layer runs dozens of small
ops (dtype casts, the adapters' scaling and adds, norms, activations), each a separate kernel with its own
overhead. Compiled, a layer's element-wise work is fused into a few generated C++ kernels: on a 2-core Xeon with
AMX a batch-4 step of the embedded model went from 691 to 444 ms (docs/benchmarks.md). The price is paid once per
run, at the first step: 38-57 s of compiling the first time on 2 cores, 13-17 s once inductor's cache (kept in
``$ANNOTUNE_HOME/compile``) holds the kernels. So ``--compile auto`` compiles only runs long enough to win
that back even the first time (``AUTO_MIN_STEPS`` optimizer steps, single-process, on a CPU); ``on`` and ``off``
force it. Every layer has the same code, so one compiled graph serves them all; shapes are dynamic, so packed rows
of any length reuse it. Validation runs uncompiled (a second graph would cost more than the few batches gain).
"""

from __future__ import annotations

import contextlib
import os
import shutil

import torch

from annotune.errors import AnnotuneError
from annotune.paths import annotune_home

# Optimizer steps from which `auto` compiles: twice the run length at which the first (uncached) compile paid for
# itself on the 2-core Xeon measured (docs/benchmarks.md); other CPU classes were not measured.
AUTO_MIN_STEPS = 500


def wanted(setting: str, device: str, world: int, total_steps: int) -> tuple[bool, str]:
    """Whether to compile, and why (for the log and run.json)."""
    if setting == "off":
        return False, "--compile off"
    if setting == "on":
        if device.startswith("cpu") and not _compiler():
            raise AnnotuneError("--compile on: compiling for a CPU needs a C++ compiler (g++), and none was found; "
                                "install one (Debian/Ubuntu: apt install g++) or use --compile off")
        return True, "--compile on"
    if not device.startswith("cpu"):
        return False, "auto: measured on CPUs only"
    if world > 1:
        return False, "auto: single-process runs only"
    if total_steps < AUTO_MIN_STEPS:
        return False, f"auto: {total_steps} steps, fewer than {AUTO_MIN_STEPS}"
    if not _compiler():
        return False, "auto: no C++ compiler (g++) found"
    return True, f"auto: {total_steps} steps"


def _compiler() -> str | None:
    """The C++ compiler inductor would use, if one is installed."""
    from torch._inductor import config

    names = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    return next((path for path in map(shutil.which, filter(None, names)) if path), None)


def compile_layers(model) -> int:
    """Compile every decoder layer of ``model`` in place; the number compiled (0 where none is known)."""
    from annotune.train.model_setup import base_model

    names = set(getattr(base_model(model), "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        return 0
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(annotune_home() / "compile"))
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def falling_back(active: bool):
    """A context in which a layer that fails to compile runs as written instead of stopping the run (for `auto`,
    which the user did not ask for; `on` shows the error)."""
    if not active:
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(suppress_errors=True)


def uncompiled():
    """A context in which compiled layers run as written (validation)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance else contextlib.nullcontext()
