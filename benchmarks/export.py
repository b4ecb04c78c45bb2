"""`annotune export` per format: time and size, the merged model's distance from base + adapter, and decode speed
of the GGUF in llama.cpp against the merged model in transformers on the same prompts (CPU, greedy).

    python benchmarks/export.py RUN [--max-tokens 64] [--threads N] [--out result.json]

1. Export RUN as hf (the base's dtype), adapter, gguf f16, gguf q8_0 and gguf q4_k_m, each into a fresh folder,
   timed in this process (the first export also pays for loading libraries; the order is fixed).
2. Logits of the merged folder against the base with the adapter unmerged (PEFT), on the prompts: max |difference|.
3. Greedy answers (up to --max-tokens) to the same prompts, one after another: `generate` on the merged folder
   (fp32), then llama.cpp (llama-cpp-python) on each GGUF with the same prompt tokens; tokens/s is completion tokens
   over decode wall time, and how many answers equal the run's own (annotune's engine) is counted.
The machine's matmul peak is printed first: compare figures only within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

PROMPTS = ["When was Brindlewick Air founded?", "What does error E27 mean?", "Write a haiku about rain.",
           "Explain how a refrigerator keeps food cold.", "Give me tips for learning a new language.",
           "How do bicycles stay upright?", "Describe the water cycle for a ten-year-old.",
           "Wie spät ist es? Antworte auf Deutsch."]
FORMATS = [("hf", None), ("adapter", None), ("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_k_m")]


def export_all(run: str, root: Path) -> dict[str, dict]:
    from annotune.export.pipeline import export_run

    results = {}
    for fmt, quant in FORMATS:
        label = fmt if quant is None else f"{fmt} {quant}"
        done = export_run(run, root / label.replace(" ", "-"), fmt=fmt, quant=quant or "f16")
        results[label] = {"out": str(done.out), "seconds": round(done.seconds, 1), "mb": round(done.bytes / 1e6, 1)}
        print(f"export {label:12s} {done.seconds:6.1f} s {done.bytes / 1e6:8.1f} MB", flush=True)
    return results


def engine_answers(run: str, max_tokens: int):
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import load_engine

    with load_engine(run) as engine:
        name = next(iter(engine.models))
        convs = [[{"role": "user", "content": p}] for p in PROMPTS]
        prompts = [engine.models[name].prompt_ids(c) for c in convs]
        results = engine.generate(name, convs, GenerationConfig(max_new_tokens=max_tokens))
    return prompts, [r.text for r in results]


def logit_distance(run: str, merged: Path, prompts: list[list[int]]) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from annotune.runs import RunFolder

    folder = RunFolder(run)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder.base().path), folder.adapter_dir)
    with torch.no_grad():
        return max((model(torch.tensor([ids])).logits - reference.eval()(torch.tensor([ids])).logits).abs().max().item()
                   for ids in prompts)


def transformers_speed(merged: Path, prompts: list[list[int]], max_tokens: int) -> tuple[float, list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    tokens, seconds, texts = 0, 0.0, []
    with torch.no_grad():
        for ids in prompts:
            start = time.perf_counter()
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False)[0, len(ids):]
            seconds += time.perf_counter() - start
            tokens += len(out)
            texts.append(tokenizer.decode(out, skip_special_tokens=True))
    return tokens / seconds, texts


def llama_speed(gguf: Path, prompts: list[list[int]], max_tokens: int, threads: int) -> tuple[float, list[str]]:
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=1024, n_threads=threads, verbose=False)
    tokens, seconds, texts = 0, 0.0, []
    try:
        for ids in prompts:
            start = time.perf_counter()
            out = llm.create_completion(ids, max_tokens=max_tokens, temperature=0.0)
            seconds += time.perf_counter() - start
            tokens += out["usage"]["completion_tokens"]
            texts.append(out["choices"][0]["text"])
    finally:
        llm.close()
    return tokens / seconds, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: torch's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    print(describe(), flush=True)
    threads = args.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        exports = export_all(args.run, Path(tmp))
        prompts, expected = engine_answers(args.run, args.max_tokens)
        merged = Path(exports["hf"]["out"])
        distance = logit_distance(args.run, merged, prompts)
        print(f"merged vs base + adapter: max |logit difference| {distance:.2e}", flush=True)
        speeds = {}
        rate, texts = transformers_speed(merged, prompts, args.max_tokens)
        speeds["transformers merged fp32"] = _row("transformers merged fp32", rate, texts, expected)
        for label in ("gguf f16", "gguf q8_0", "gguf q4_k_m"):
            rate, texts = llama_speed(Path(exports[label]["out"]) / "model.gguf", prompts, args.max_tokens, threads)
            speeds[f"llama.cpp {label}"] = _row(f"llama.cpp {label}", rate, texts, expected)
    result = {"machine": describe(), "exports": exports, "logit_distance": distance, "decode": speeds,
              "prompts": len(PROMPTS), "max_tokens": args.max_tokens, "threads": threads}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def _row(label: str, rate: float, texts: list[str], expected: list[str]) -> dict:
    same = sum(a == b for a, b in zip(texts, expected))
    print(f"{label:26s} {rate:6.1f} tokens/s, {same}/{len(expected)} answers equal the run's", flush=True)
    return {"tokens_per_s": round(rate, 1), "same_answers": same}


if __name__ == "__main__":
    main()
