"""GGUF through llama.cpp's own converter (convert_hf_to_gguf.py with the gguf-py it ships), run as a child
process with this Python, and quantised with llama.cpp's quantiser (through the llama-cpp-python bindings).

`make setup-gguf` copies the converter out of the llama-cpp-python source distribution pinned in constraints.txt
(the same llama.cpp the bindings are built from) into ``<venv>/share/annotune/llama.cpp``; nothing is downloaded at
export time. ``ANNOTUNE_LLAMA_CPP`` may point at another llama.cpp checkout instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from annotune.errors import ExportError

CONVERTER_ENV = "ANNOTUNE_LLAMA_CPP"
SCRIPT = "convert_hf_to_gguf.py"
# --quant: what the converter writes itself, and what llama.cpp's quantiser makes from its f16 output
CONVERTER_TYPES = {"f32": "f32", "f16": "f16", "bf16": "bf16", "q8_0": "q8_0"}
QUANTISER_TYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
BYTES_PER_WEIGHT = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 1.07, "q4_k_m": 0.6}


def converter_dir() -> Path:
    return Path(os.environ.get(CONVERTER_ENV) or Path(sys.prefix) / "share" / "annotune" / "llama.cpp")


def converter_script() -> Path:
    script = converter_dir() / SCRIPT
    if not script.is_file():
        raise ExportError(f"llama.cpp's GGUF converter is not installed ({script} is missing); run `make setup-gguf`, "
                          f"which copies it from the pinned llama-cpp-python source, or set {CONVERTER_ENV} to a "
                          "llama.cpp checkout. The hf and adapter formats work without it")
    return script


def convert(hf_dir: Path, out_file: Path, quant: str) -> None:
    """Write ``out_file`` from the Hugging Face folder ``hf_dir`` in ``quant`` (f32/f16/bf16/q8_0/q4_k_m)."""
    first = out_file if quant in CONVERTER_TYPES else out_file.with_suffix(".f16.gguf")
    command = [sys.executable, str(converter_script()), str(hf_dir), "--outfile", str(first),
               "--outtype", CONVERTER_TYPES.get(quant, "f16")]
    result = subprocess.run(command, capture_output=True, text=True)
    unsupported = re.search(r"Model (\S+) is not supported", result.stderr)
    if unsupported:
        raise ExportError(f"llama.cpp's converter cannot handle the architecture {unsupported.group(1)}, so this run "
                          "cannot become a GGUF file; --format hf (vLLM, TGI, transformers) and --format adapter "
                          "still work")
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ExportError(f"llama.cpp's converter failed (exit {result.returncode}); --format hf and adapter "
                          f"still work. Its last words:\n{tail}")
    if first != out_file:
        try:
            quantize(first, out_file, quant)
        finally:
            first.unlink(missing_ok=True)


def quantize(source: Path, out_file: Path, quant: str) -> None:
    """llama.cpp's own quantiser (llama_model_quantize), as `llama-quantize` runs it."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(f"--quant {quant} needs llama.cpp's quantiser from the llama-cpp-python package; run "
                          "`make setup-gguf`, or export with --quant f16 or q8_0 (the converter writes those itself)"
                          ) from None
    import ctypes
    import logging

    if not logging.getLogger("annotune").isEnabledFor(logging.INFO):  # a line per tensor, unless --verbose
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTISER_TYPES[quant])
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out_file).encode(), ctypes.byref(params))
    if code != 0:
        raise ExportError(f"llama.cpp's quantiser failed to make {quant} (code {code}); try --quant q8_0")


def read_metadata(gguf_file: Path) -> dict:
    """The fields a runtime needs to talk like the run: architecture, chat template, EOS/EOT, BOS handling."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file)
    wanted = {"general.architecture": "architecture", "tokenizer.chat_template": "chat_template",
              "tokenizer.ggml.eos_token_id": "eos", "tokenizer.ggml.eot_token_id": "eot",
              "tokenizer.ggml.bos_token_id": "bos", "tokenizer.ggml.add_bos_token": "add_bos",
              "general.file_type": "file_type"}
    found = {}
    for key, name in wanted.items():
        field = reader.get_field(key)
        if field is not None:
            found[name] = field.contents()
    return found


def check_metadata(gguf_file: Path, template: str, stop_ids: list[int]) -> dict:
    """The GGUF must carry the training template and end answers on one of the run's stop tokens."""
    meta = read_metadata(gguf_file)
    if meta.get("chat_template") != template:
        raise ExportError(f"{gguf_file.name} does not carry the run's chat template; the converter dropped it")
    if meta.get("eos") not in stop_ids and meta.get("eot") not in stop_ids:
        raise ExportError(f"{gguf_file.name} ends answers on token {meta.get('eos')}, which is not one of the run's "
                          f"stop tokens {stop_ids}")
    return meta
