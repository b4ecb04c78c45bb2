"""A base model's identity, recorded in a run folder so the run works from anywhere and never changes base.

Local models (folders, GGUF files) are recorded by absolute path and a content hash of their weights; the embedded
model by name and content hash; hub models by id and the resolved revision. Hashes of large files are cached by
path, size and modification time, so each file is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from annotune.errors import ModelLoadError
from annotune.models.loading import EMBEDDED_DEFAULT, ModelRef, resolve_model
from annotune.paths import annotune_home

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def identity(model: ModelRef) -> dict:
    """What run.json records as the base model."""
    record = {"ref": model.ref, "kind": model.kind}
    if model.kind == "embedded":
        return {**record, "name": EMBEDDED_DEFAULT, "sha256": content_hash(Path(model.path))}
    if model.kind == "gguf":
        source = Path(model.ref).expanduser().resolve()
        return {**record, "path": str(source), "sha256": content_hash(source)}
    if model.kind == "folder":
        return {**record, "path": model.path, "sha256": content_hash(Path(model.path))}
    return {**record, "path": model.path, "revision": _hub_revision(model.path)}


def resolve_recorded(base: dict, run_dir: Path) -> ModelRef:
    """The base model a run was trained on, checked against its recorded identity."""
    kind, recorded = base.get("kind"), base.get("sha256")
    if kind == "embedded":
        model = resolve_model(EMBEDDED_DEFAULT)
        local = Path(model.path)
    elif kind in ("folder", "gguf"):
        local = Path(base["path"] if kind == "gguf" or recorded else base["ref"])
        if not local.exists():
            raise ModelLoadError(
                f"{run_dir} was trained on the base model at {local}, which is not there any more; put it back at "
                "that path (the run's adapter only works on those weights)")
        model = resolve_model(str(local))
    else:
        return ModelRef(base.get("ref", base.get("path")), "hub", base.get("path", base.get("ref")),
                        base.get("revision"))
    if recorded and content_hash(local) != recorded:
        raise ModelLoadError(
            f"the base model at {local} has changed since {run_dir} was trained on it (its content hash differs); "
            "the run's adapter only fits the weights it was trained on: restore them, or train the run again")
    return model


def same_base(a: ModelRef, b: ModelRef) -> bool:
    return (a.kind == "hub") == (b.kind == "hub") and a.path == b.path and a.revision == b.revision


def content_hash(path: Path) -> str:
    """sha256 over a file, or over a folder's weight files and config.json (names included)."""
    if path.is_file():
        return _file_hash(path)
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file() and (file.suffix in _WEIGHT_SUFFIXES or file.name == "config.json"):
            digest.update(f"{file.relative_to(path)}\0{_file_hash(file)}\n".encode())
    return digest.hexdigest()


def _file_hash(file: Path) -> str:
    stat = file.stat()
    key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = annotune_home() / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    cache[key] = digest.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".hashes-{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only cache only costs hashing again next time
    return cache[key]


def _hub_revision(repo: str) -> str | None:
    """The commit of the locally cached snapshot of a hub model, if there is one."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True)).name
    except Exception:  # noqa: BLE001 - no cached snapshot: the revision stays unknown
        return None
