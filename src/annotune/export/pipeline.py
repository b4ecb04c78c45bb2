"""`annotune export RUN --out DIR --format hf|gguf|adapter`: one run folder in, one export folder out.

Everything is written into a hidden folder beside ``--out`` and renamed into place at the end, so a failed or
interrupted export leaves nothing half-written behind (and an existing export stays until the new one is done).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from annotune.errors import ExportError
from annotune.export import gguf, hf, ollama
from annotune.export.readme import readme
from annotune.runs import RunFolder

log = logging.getLogger(__name__)
FORMATS = ("hf", "gguf", "adapter")
QUANTS = ("f16", "q8_0", "q4_k_m")
GGUF_NAME = "model.gguf"
MARKER = "annotune-export.json"


@dataclass
class Exported:
    out: Path
    format: str
    seconds: float
    bytes: int


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "hf", dtype: str | None = None,
               quant: str = "f16", overwrite: bool = False) -> Exported:
    started = time.perf_counter()
    run = RunFolder(run_dir)
    run.require_complete()
    out = Path(out).expanduser()
    _check_target(run, out, overwrite)
    if fmt == "gguf":
        gguf.converter_script()  # say it is missing before anything is loaded
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent))
    try:
        details = _write(run, staging, fmt, dtype, quant)
        (staging / "README.md").write_text(readme(run, fmt, details), encoding="utf-8")
        _write_marker(staging, run, fmt, details)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's folder is private; the export is an ordinary folder
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return Exported(out, fmt, time.perf_counter() - started, size)


def _check_target(run: RunFolder, out: Path, overwrite: bool) -> None:
    if out.resolve() == run.path.resolve() or run.path.resolve() in out.resolve().parents:
        raise ExportError(f"--out {out} is inside the run folder; export somewhere else")
    if out.is_file():
        raise ExportError(f"{out} is a file; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
        if not (out / MARKER).is_file():
            raise ExportError(f"{out} exists and is not an annotune export (no {MARKER}); refusing to delete it")


def _write_marker(folder: Path, run: RunFolder, fmt: str, details: dict) -> None:
    """What the folder is, for people and for --overwrite (which only replaces folders that have it)."""
    from annotune import __version__

    record = {"annotune_version": __version__, "run": str(run.path.resolve()), "format": fmt,
              **{k: details[k] for k in ("dtype", "quant", "base") if k in details}}
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _write(run: RunFolder, staging: Path, fmt: str, dtype: str | None, quant: str) -> dict:
    if fmt == "adapter":
        _need_space(staging, sum(f.stat().st_size for f in run.adapter_dir.iterdir()) if run.adapter_dir else 0)
        base, rank = hf.write_adapter(run, staging)
        return {"base": base, "rank": rank}
    model = hf.load_merged(run)
    if fmt == "hf":
        dtype = dtype or _base_dtype(_base_config(run))
        _need_space(staging, hf.parameter_bytes(model, dtype))
        hf.write_merged(run, model, staging, dtype)
        return {"base": hf.base_reference(run), "dtype": dtype}
    return _write_gguf(run, model, staging, quant)


def _write_gguf(run: RunFolder, model, staging: Path, quant: str) -> dict:
    n = model.num_parameters()
    _need_space(staging, int(n * (hf.BYTES_PER_DTYPE["f32"] + gguf.BYTES_PER_WEIGHT[quant] + 2)))
    merged = staging / "hf-merged"
    hf.write_merged(run, model, merged, "f32")  # the converter's input: full precision, never a quantised base
    del model
    gguf.convert(merged, staging / GGUF_NAME, quant)
    shutil.rmtree(merged)
    tokenizer = run.tokenizer()
    meta = gguf.check_metadata(staging / GGUF_NAME, tokenizer.chat_template, hf.stop_ids(run))
    details = {"base": hf.base_reference(run), "quant": quant, "metadata": meta}
    try:
        layout = ollama.read_layout(tokenizer)
    except ExportError as exc:  # llama.cpp still runs the GGUF with the template it carries
        log.warning("warning: no Ollama Modelfile: %s", exc)
        return {**details, "modelfile_problem": str(exc)}
    template = ollama.go_template(layout, drop_bos=tokenizer.bos_token if meta.get("add_bos") else None)
    stops = [tokenizer.convert_ids_to_tokens(i) for i in hf.stop_ids(run)]
    (staging / "Modelfile").write_text(ollama.modelfile(template, run.default_system, stops), encoding="utf-8")
    return details


def _base_config(run: RunFolder) -> dict:
    """The config.json of the weights being exported (the base's, for an adapter run)."""
    folder = Path(run.base().path) if run.adapter_dir is not None else run.weights_dir
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text())
    from transformers import AutoConfig  # a hub base: its config is in the hub cache

    return AutoConfig.from_pretrained(run.base().path).to_dict()


def _base_dtype(config: dict) -> str:
    """The base's own precision: an export is no larger, and no coarser, than its base."""
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")
    return {"bfloat16": "bf16", "float16": "f16"}.get(name, "f32")


def _need_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05 + (64 << 20):
        raise ExportError(f"not enough disk space at {folder.parent}: the export needs about {needed / 1e9:.1f} GB, "
                          f"{free / 1e9:.1f} GB are free; free some space or choose another --out")
