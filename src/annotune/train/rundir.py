"""The run folder: everything needed to use, resume or audit a training run.

    run.json            base model reference, method, status, data sizes, final losses, stop tokens
    config.yaml         the resolved training config (commented)
    chat_template.jinja the chat template used in training (inference uses the same)
    tokenizer/          tokenizer with that template
    adapter/ | model/   the PEFT LoRA adapter, or full weights
    data/               the exact train/validation split
    metrics.jsonl, tensorboard/, loss.png, checkpoints/
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

from annotune import __version__
from annotune.config import TrainConfig
from annotune.errors import RunDirError
from annotune.runs import RUN_FILE


def default_run_dir(cfg: TrainConfig) -> Path:
    stem = Path(cfg.data).stem if cfg.data else "run"
    return Path("runs") / f"{stem}-{cfg.method}"


def resolve(cfg: TrainConfig) -> tuple[Path, TrainConfig, list[str]]:
    """The run folder, the config to train with and the changes applied on resume; refuses a clash before any
    work is done.

    With --resume the run's own config.yaml is the config; options given with it are checked by
    :func:`annotune.train.resume.merge`. Nothing is written here: the folder is created by :func:`create` once the
    data and model have been checked, so a rejected run leaves nothing behind.
    """
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if cfg.resume and cfg.overwrite:
        raise RunDirError("--resume continues a run and --overwrite replaces it: pass one of them")
    if cfg.resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise RunDirError(f"--resume: {run_dir} holds no run to resume (no config.yaml)")
        import yaml

        from annotune.train.resume import merge

        return (run_dir, *merge(yaml.safe_load(saved.read_text()), cfg, run_dir))
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.overwrite:
            raise RunDirError(
                f"{run_dir} already exists; pass --overwrite to replace it, --resume to continue it, or --out NEW"
            )
        if not ((run_dir / RUN_FILE).is_file() or (run_dir / "config.yaml").is_file()):
            raise RunDirError(f"{run_dir} exists and is not an annotune run folder; refusing to delete it")
    return run_dir, cfg.model_copy(update={"out": str(run_dir)}), []


def create(run_dir: Path, cfg: TrainConfig) -> None:
    """Create the folder (replacing an old run when --overwrite was given) and write config.yaml (rank 0 only)."""
    if cfg.resume:
        return
    if run_dir.exists() and cfg.overwrite:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "config.yaml", saved_config(cfg))


def saved_config(cfg: TrainConfig) -> str:
    """config.yaml's text: the run as trained, so a later --resume continues it (not the one-off --resume)."""
    return cfg.model_copy(update={"resume": False, "overwrite": False}).to_yaml()


def remove_unfinished(run_dir: Path) -> None:
    """Undo :func:`create` after a failed set-up, so the same command can simply be run again. The folder was
    new, empty or (with --overwrite) an old run the user chose to replace, so all of it goes."""
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    run_dir.rmdir()


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_run_info(run_dir: Path, **fields) -> None:
    """Merge ``fields`` into run.json."""
    path = run_dir / RUN_FILE
    info = json.loads(path.read_text()) if path.is_file() else {"annotune_version": __version__}
    info.update(fields)
    info["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    atomic_write(path, json.dumps(info, indent=2) + "\n")
