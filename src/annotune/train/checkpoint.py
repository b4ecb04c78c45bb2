"""Checkpoints: trainable weights, optimizer, scheduler, RNG and data position, written atomically.

A checkpoint is written to a hidden staging folder and renamed into place, so a run killed mid-save (even with
SIGKILL) leaves only complete checkpoints behind; ``--resume`` continues from the newest one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE = "state.json"
# --save-every auto: besides each epoch's end, a checkpoint every this many steps of an epoch longer than that, so a
# large data set's one long epoch (30,000 chats: 7,500 steps, hours on a CPU) is not lost to a crash or a kill.
AUTO_SAVE_STEPS = 500


def due(save_every: int | str, step: int, steps_per_epoch: int, epoch_end: bool) -> bool:
    """Whether optimizer step ``step`` (counted from 1 over the run) ends with a checkpoint under --save-every."""
    if save_every == "auto":
        return epoch_end or (steps_per_epoch > AUTO_SAVE_STEPS and step % AUTO_SAVE_STEPS == 0)
    return step % save_every == 0 if save_every else epoch_end


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def set_trainable(model, weights: dict[str, torch.Tensor]) -> None:
    """Copy weights saved by :func:`trainable_state` back into ``model``."""
    params = dict(model.named_parameters())
    for name, value in weights.items():
        params[name].data.copy_(value)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def staging_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f".step-{step:07d}.tmp"


def write_rank_rng(staging: Path, rank: int) -> None:
    torch.save(rng_state(), staging / f"rng-{rank}.pt")


def finish(run_dir: Path, step: int, model, optimizer, scheduler, state: dict, keep: int) -> Path:
    """Write the shared parts (rank 0 only), rename the staging folder into place and prune old checkpoints."""
    staging = staging_dir(run_dir, step)
    save_file(trainable_state(model), str(staging / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    (staging / STATE).write_text(json.dumps(state, indent=2))
    final = run_dir / "checkpoints" / f"step-{step:07d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE).is_file())


def load(checkpoint: Path, model, optimizer, scheduler, rank: int) -> dict:
    """Restore everything saved in ``checkpoint`` into the live objects; return its state dict."""
    set_trainable(model, load_file(str(checkpoint / "trainable.safetensors")))
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=False))
    rng_file = checkpoint / f"rng-{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((checkpoint / STATE).read_text())
