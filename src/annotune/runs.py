"""Reading a run folder's description (run.json); shared by training, which writes it, and every later stage."""

from __future__ import annotations

import json
from pathlib import Path

from annotune.errors import RunDirError

RUN_FILE = "run.json"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def read_run_info(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not an annotune run folder (no {RUN_FILE})")
    return json.loads(path.read_text())
