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

RUN_FILE = "run.json"


def default_run_dir(cfg: TrainConfig) -> Path:
    stem = Path(cfg.data).stem if cfg.data else "run"
    return Path("runs") / f"{stem}-{cfg.method}"


def prepare(cfg: TrainConfig, main: bool) -> tuple[Path, TrainConfig]:
    """Create (or reopen with --resume) the run folder; return it and the config to train with."""
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if cfg.resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise RunDirError(f"--resume: {run_dir} holds no run to resume (no config.yaml)")
        import yaml

        values = yaml.safe_load(saved.read_text())
        values.update(resume=True, overwrite=False, out=str(run_dir), progress=cfg.progress)
        return run_dir, TrainConfig(**values)
    if not main:  # rank 0 checks and creates the folder; the others wait for it at a barrier
        return run_dir, cfg.model_copy(update={"out": str(run_dir)})
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.overwrite:
            raise RunDirError(
                f"{run_dir} already exists; pass --overwrite to replace it, --resume to continue it, or --out NEW"
            )
        if not ((run_dir / RUN_FILE).is_file() or (run_dir / "config.yaml").is_file()):
            raise RunDirError(f"{run_dir} exists and is not an annotune run folder; refusing to delete it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.model_copy(update={"out": str(run_dir)})
    atomic_write(run_dir / "config.yaml", cfg.to_yaml())
    return run_dir, cfg


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


def read_run_info(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not an annotune run folder (no {RUN_FILE})")
    return json.loads(path.read_text())


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()
