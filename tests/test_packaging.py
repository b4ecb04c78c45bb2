"""The wheel `pip install annotune` would get holds every file the package reads at run time: a data file left out
of `package-data` works from the source tree (the editable install every other test uses) and breaks a real install."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    repo = tmp_path / "repo"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(SRC, repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(SRC.parent / name, repo / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "--no-build-isolation",
                            "--no-cache-dir", "--quiet", "--wheel-dir", str(tmp_path / "dist")],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("annotune-*.whl")
    in_wheel = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("annotune/")}
    in_tree = {path.relative_to(SRC).as_posix() for path in (SRC / "annotune").rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert "annotune/train/replay_prompts.jsonl" in in_tree and "annotune/evaluate/probe.jsonl" in in_tree
    assert sorted(in_tree - in_wheel) == []
