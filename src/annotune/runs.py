"""The run folder as later stages see it: its description (run.json), its tokenizer and template, its adapter or
weights, and its base model by recorded identity. Training writes it (annotune.train.rundir); chat, generate,
serve, evaluate and export read it through :class:`RunFolder`."""

from __future__ import annotations

import json
from pathlib import Path

from annotune.errors import RunDirError

RUN_FILE = "run.json"
ROUTER_FILE = "router.safetensors"  # written by generation/routing.py


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def read_run_info(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not an annotune run folder (no {RUN_FILE})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RunDirError(f"{path}: damaged ({exc}); train the run again") from None


class RunFolder:
    """A finished (or unfinished) training run, usable from any working directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.info = read_run_info(self.path)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def adapter_dir(self) -> Path | None:
        """The LoRA adapter, or None for a full fine-tune (whose weights are in ``weights_dir``)."""
        return self.path / "adapter" if not (self.path / "model").is_dir() else None

    @property
    def weights_dir(self) -> Path:
        return self.path / "model"

    @property
    def router_file(self) -> Path | None:
        """Which requests the adapter answers (generation/routing.py); None for a full fine-tune or an older run."""
        path = self.path / ROUTER_FILE
        return path if self.adapter_dir is not None and path.is_file() else None

    @property
    def stop_ids(self) -> list[int] | None:
        return self.info.get("stop_token_ids")

    @property
    def default_system(self) -> str | None:
        return self.info.get("default_system")

    def require_complete(self) -> None:
        if self.info.get("status") != "complete":
            raise RunDirError(f"{self.path} has not finished training (status: {self.info.get('status')}); "
                              f"finish it with `annotune train --resume --out {self.path}`")

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path / "tokenizer")

    def base(self):
        """The model the weights to load are in: the recorded base (checked) for an adapter, else the run's own."""
        from annotune.models.identity import resolve_recorded
        from annotune.models.loading import ModelRef

        if self.adapter_dir is None:
            return ModelRef(str(self.weights_dir), "folder", str(self.weights_dir.resolve()))
        if "base_model" not in self.info:
            raise RunDirError(f"{self.path / RUN_FILE} names no base model; train the run again")
        return resolve_recorded(self.info["base_model"], self.path)

    def base_label(self) -> str:
        """The base model's name as `serve` would call it when served itself."""
        base = self.info.get("base_model", {})
        if base.get("kind") in ("folder", "gguf"):
            return Path(base.get("path") or base["ref"]).name
        return base.get("name") or base.get("ref") or "?"
