"""Where annotune keeps its caches."""

import os
from pathlib import Path


def annotune_home() -> Path:
    """``$ANNOTUNE_HOME``, default ``~/.cache/annotune``."""
    return Path(os.environ.get("ANNOTUNE_HOME") or Path.home() / ".cache" / "annotune").expanduser()
