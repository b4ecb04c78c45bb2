"""Shared fixtures: tiny random models built locally, a temp annotune home per test, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Under `pytest -n N` (`make test`), torch in each worker, and in every command a test starts, gets its share of the
# cores rather than all of them (set before anything imports torch).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import tiny_model  # noqa: E402
from export_fixtures import ollama_render, smol_run  # noqa: E402,F401  (fixtures for tests/export)
from serve_fixtures import memorized, serve  # noqa: E402,F401  (fixtures for tests/serve)
from workbench_fixtures import (  # noqa: E402,F401  (fixtures for tests/annotate)
    db_url, postgres_server, quick_password_hashing, start_server)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def pytest_collection_modifyitems(items):
    """Under `pytest -n N` (`make test`), the tests of the real embedded model run in one worker, which converts
    the model once for all of them."""
    for item in items:
        if "real_model_home" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("real-model"))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright, one per test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium package (see .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A 2-layer Llama per chat template, plus other architectures; built once per session."""
    root = tmp_path_factory.mktemp("tiny")
    built = {name: tiny_model.build(root / name, template=name) for name in ("chatml", "llama3", "smollm", "none")}
    built["gpt_neox"] = tiny_model.build(root / "gpt_neox", template="none", arch="gpt_neox")
    built["qwen2"] = tiny_model.build(root / "qwen2", template="chatml", arch="qwen2")
    return built


@pytest.fixture(scope="session")
def lively_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny models whose random weights are scaled up so that they generate varied text, per architecture."""
    root = tmp_path_factory.mktemp("lively")
    return {arch: tiny_model.build(root / arch, template="none" if arch == "gpt_neox" else "chatml", arch=arch,
                                   scale=8.0) for arch in ("llama", "gpt_neox", "qwen2")}


@pytest.fixture(scope="session")
def tiny(tiny_models) -> Path:
    return tiny_models["chatml"]


@pytest.fixture(scope="session")
def shared_replay(tmp_path_factory) -> Path:
    """Replay answers (the base model's own answers, cached per base model) shared by every test's home."""
    return tmp_path_factory.mktemp("replay")


@pytest.fixture(scope="session")
def shared_paraphrase(tmp_path_factory) -> Path:
    """The real model's rewordings of training questions (cached per base model), made once per session."""
    return tmp_path_factory.mktemp("paraphrase")


def _new_home(tmp_path_factory, name: str, shared_replay: Path) -> Path:
    """An empty $ANNOTUNE_HOME whose replay answers are the session's shared ones."""
    home = tmp_path_factory.mktemp(name)
    (home / "models").mkdir()
    (home / "replay").symlink_to(shared_replay)
    return home


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory, shared_replay):
    """The cache folder of the fixtures wider than one test (a module's trained run, ...), which are made before a
    test's own `annotune_home`: without it they wrote their replay answers and rewordings into the user's real
    $ANNOTUNE_HOME."""
    home = _new_home(tmp_path_factory, "session-home", shared_replay)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANNOTUNE_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield home


@pytest.fixture(scope="session")
def real_model_home(tmp_path_factory, shared_replay, shared_paraphrase) -> Path:
    """A home holding the real embedded model, converted once per session (about a minute) for every test that
    trains or loads it; ANNOTUNE_TEST_SHARED_HOME may name a home that holds a converted copy already. A test
    that uses this fixture (or a fixture built on it) sees the model in its own home through a link."""
    from annotune.models.embedded import EMBEDDED_NAME, embedded_model_dir

    home = _new_home(tmp_path_factory, "real-home", shared_replay)
    (home / "paraphrase").symlink_to(shared_paraphrase)
    shared = os.environ.get("ANNOTUNE_TEST_SHARED_HOME")
    copy = Path(shared) / "models" / EMBEDDED_NAME if shared else None
    if copy is not None and copy.is_dir():
        (home / "models" / EMBEDDED_NAME).symlink_to(copy)
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ANNOTUNE_HOME", str(home))
            embedded_model_dir()
    return home


@pytest.fixture(autouse=True)
def annotune_home(request, tmp_path_factory, monkeypatch, shared_replay) -> Path:
    """Each test gets its own cache folder. Replay answers (generated once per base model) are shared through a
    link, and so is the converted embedded model for the tests that use `real_model_home`."""
    home = _new_home(tmp_path_factory, "home", shared_replay)
    if "real_model_home" in request.fixturenames:
        from annotune.models.embedded import EMBEDDED_NAME

        real = request.getfixturevalue("real_model_home")
        (home / "paraphrase").symlink_to((real / "paraphrase").resolve())
        (home / "models" / EMBEDDED_NAME).symlink_to((real / "models" / EMBEDDED_NAME).resolve())
    monkeypatch.setenv("ANNOTUNE_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def write_chats(path: Path, pairs: list[tuple[str, str]], system: str | None = "Be brief.") -> Path:
    with path.open("w") as fh:
        for question, answer in pairs:
            msgs = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            fh.write(json.dumps({"messages": msgs}) + "\n")
    return path


# Six facts asked two ways, like real domain data: the validation split takes only phrasings of facts that stay
# in training (dataset.split.covered_split).
QA = [(question.format(i=i), f"Hold button {i} for {i + 3} seconds.") for i in range(6)
      for question in ("How do I reset device {i}?", "What resets device {i}?")]


@pytest.fixture
def chats(tmp_path) -> Path:
    return write_chats(tmp_path / "chats.jsonl", QA)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600,
            module: bool = False) -> subprocess.CompletedProcess:
    """Run the real `annotune` command (``module``: as `python -m annotune`)."""
    full_env = {**os.environ, **(env or {})}
    command = [sys.executable, "-m", "annotune", *args] if module else [str(BIN / "annotune"), *args]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
