"""Compiling the decoder layers (``torch.compile``) for long runs on CPUs with AMX.

On a CPU a LoRA step of a small model is not only its matrix products: each decoder layer runs dozens of small
ops (dtype casts, the adapters' scaling and adds, norms, activations), each a separate kernel with its own
overhead. Compiled, a layer's element-wise work is fused into a few generated C++ kernels: on a 2-core Xeon with
AMX, where the matrix products are fast and the small ops are most of a step, a batch-4 step of the embedded model
went from 691 to 444 ms (docs/benchmarks.md). The price is paid once per run, at the first step: about 24 s of
compiling the first time on 2 cores, 3 s once inductor's caches (kept in ``$ANNOTUNE_HOME/compile``) hold the
traced graph and its kernels. On an AMD EPYC with AVX-512 BF16, whose slower matrix products are most of a step,
an earlier check gained 4%. So ``--compile auto`` compiles only single-process runs on a CPU with AMX that are
long enough to win the first compile back (``AUTO_MIN_STEPS``); ``on`` and ``off`` force it. The choice counts
the whole run's steps, so a resumed run compiles exactly when it did at its start. Every layer has the same code,
so one compiled graph serves them all (the first layer's input is given a gradient like the others' for that);
shapes are dynamic, so packed rows of any length reuse it. Validation runs uncompiled.
"""

from __future__ import annotations

import logging
import os
import shutil
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from annotune.errors import AnnotuneError, TrainingError
from annotune.paths import annotune_home
from annotune.train import checkpoint, rundir
from annotune.train.precision import cpu_has

if TYPE_CHECKING:
    from annotune.train.prepare import Loop

log = logging.getLogger(__name__)

# Optimizer steps from which `auto` compiles: on the 2-core Xeon with AMX measured, the quickstart's 219 steps
# trained 8% faster with the first (uncached) compile and 28% faster once cached (docs/benchmarks.md).
AUTO_MIN_STEPS = 200


def wanted(setting: str, device: str, world: int, total_steps: int) -> tuple[bool, str]:
    """Whether to compile, and why (for the log and run.json)."""
    if setting == "off":
        return False, "--compile off"
    if setting == "on":
        missing = _missing_toolchain() if device.startswith("cpu") else None
        if missing:
            raise AnnotuneError(f"--compile on: compiling for a CPU needs {missing}; install it or use --compile off")
        return True, "--compile on"
    if not device.startswith("cpu"):
        return False, "auto: measured on CPUs only"
    if world > 1:
        return False, "auto: single-process runs only"
    if not _has_amx():
        return False, "auto: only CPUs with AMX gained enough to compile"
    if total_steps < AUTO_MIN_STEPS:
        return False, f"auto: {total_steps} steps, fewer than {AUTO_MIN_STEPS}"
    missing = _missing_toolchain()
    if missing:
        return False, f"auto: needs {missing}"
    return True, f"auto: {total_steps} steps on a CPU with AMX"


def _has_amx() -> bool:
    return cpu_has("amx_bf16")


def _missing_toolchain() -> str | None:
    """What inductor's CPU kernels need and this machine lacks: a C++ compiler (as inductor looks for one: $CXX,
    else g++) and Python's headers (the kernels are built as Python extensions)."""
    from torch._inductor import config

    names = [n for n in (config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)) if n]
    if not any(map(shutil.which, names)):
        return f"a C++ compiler ({' or '.join(names)}; Debian/Ubuntu: apt install g++)"
    if not Path(sysconfig.get_paths()["include"], "Python.h").is_file():
        return "Python's C headers (Python.h; Debian/Ubuntu: apt install python3-dev)"
    return None


def prepare(loop: Loop) -> None:
    """Compile the loop's decoder layers where --compile asks or a long run on an AMX CPU gains, and record it."""
    cfg, dist = loop.cfg, loop.dist
    # The whole run's steps, not those left: a resumed run compiles as it did at its start.
    want, why = wanted(cfg.compile, dist.device, dist.world, loop.total_steps)
    layers = compile_layers(loop.model) if want else 0
    loop.compiled = layers > 0
    if dist.main:
        if want and not layers:
            log.warning("--compile: this model's decoder layers are not known (no _no_split_modules); training "
                        "runs uncompiled")
        elif layers:
            log.warning("Compiling %d decoder layers (%s; --compile off skips it): the first step takes about "
                        "half a minute the first time, seconds once cached", layers, why)
        rundir.write_run_info(loop.run_dir, compiled={"layers": layers, "why": why})


def step(loop: Loop, take_step: Callable[[], dict], step_number: int) -> dict:
    """One optimizer step (``take_step``). Where the compiled layers fail to compile (at the first step, or at a
    later one that meets a new shape), --compile on stops with a clear error and auto takes the step again
    uncompiled, from the same random state, and trains on that way: nothing was applied yet, as the optimizer
    steps only after a whole backward pass."""
    if not loop.compiled:
        return take_step()
    rng = checkpoint.rng_state()
    try:
        return take_step()
    except AnnotuneError:
        raise
    except Exception as exc:
        cause = reason(exc)
        if loop.cfg.compile == "on":
            if is_compile_error(exc):
                raise TrainingError(f"--compile on: compiling the decoder layers failed at step {step_number} "
                                    f"({cause}); train with --compile off") from exc
            raise
        uncompile(loop.model)
        loop.compiled = False
        loop.optimizer.zero_grad(set_to_none=True)
        checkpoint.set_rng_state(rng)  # the same noise and dropout as the failed try drew
        if loop.dist.main:
            log.warning("Compiling the decoder layers failed at step %d (%s); training on uncompiled",
                        step_number, cause)
            rundir.write_run_info(loop.run_dir, compiled={"layers": 0,
                                                          "why": f"auto: compiling failed at step {step_number}: "
                                                                 f"{cause}"})
        return take_step()


def compile_layers(model) -> int:
    """Compile every decoder layer of ``model`` in place; the number compiled (0 where none is known)."""
    from annotune.train.model_setup import base_model

    names = set(getattr(base_model(model), "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        return 0
    _use_annotune_cache()
    _configure()
    # One graph for every layer: frozen embeddings leave the first layer's input without a gradient, unlike every
    # later layer's, a difference the compiled graph is specialised on; a second graph for that one layer made the
    # first compile 12 s longer (docs/benchmarks.md). transformers' hook gives the embeddings' output a gradient; it
    # adds the first layer's input gradient, too little to measure in a step. Only where the first layer trains
    # (with --lora-layers below 1 the lower layers have no adapters, a graph of their own, and no backward).
    if any(p.requires_grad for p in layers[0].parameters()):
        base_model(model).enable_input_require_grads()
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


_saved_config: dict = {}  # (config module, name): the value before _configure changed it; uncompile() sets it back
AUTOCAST_SWITCHES = ("torch.amp.autocast_mode._enter_autocast", "torch.amp.autocast_mode._exit_autocast")


def _configure() -> None:
    """Two settings of torch.compile for the first step's time, until uncompile():

    - Python floats in a layer (LoRA's scale, the norm's epsilon) are the same at every call; traced as inputs, one
      of them made dynamo start its analysis over, seconds of the first step. They are specialised from the start.
    - The grid attention turns autocast off around its kernel (attention.py), and AOTAutograd's cache refuses a
      graph holding autocast's switches unless they are marked cacheable, keyed by torch's version; the switches'
      arguments are constants of the graph, so its cache key covers them."""
    from torch._inductor import config as inductor_config

    marked = {**inductor_config.unsafe_marked_cacheable_functions,
              **dict.fromkeys(AUTOCAST_SWITCHES, torch.__version__)}
    for module, name, value in ((torch._dynamo.config, "specialize_float", True),
                                (inductor_config, "unsafe_marked_cacheable_functions", marked)):
        _saved_config.setdefault((module, name), getattr(module, name))
        setattr(module, name, value)


def _use_annotune_cache() -> None:
    """Inductor's kernels cached under annotune's home (kept across runs, unlike /tmp), unless the user chose a
    folder. Inductor reads the variable on every use, and sets it to its default when first imported, so a value
    equal to that default counts as not chosen."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, "", default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(annotune_home() / "compile")


def uncompile(model) -> None:
    """Run every compiled layer of ``model`` as written again, and forget what was compiled."""
    from annotune.train.model_setup import base_model

    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
    base_model(model).disable_input_require_grads()
    for (module, name), value in _saved_config.items():
        setattr(module, name, value)
    _saved_config.clear()
    torch.compiler.reset()


def is_compile_error(exc: BaseException) -> bool:
    """An error raised by torch.compile itself (tracing, inductor, the C++ build), not by the model or the data."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


def reason(exc: BaseException) -> str:
    """The innermost cause of a compile error, on one line ("RuntimeError: ..."), not dynamo's wrapper."""
    for _ in range(8):  # a chain of causes, not a loop
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if inner is None or inner is exc:
            break
        exc = inner
    line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {line}"[:300]


def uncompiled():
    """A context in which compiled layers run as written (validation)."""
    return torch.compiler.set_stance("force_eager")
