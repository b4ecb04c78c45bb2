"""Questions per second of `annotune evaluate` against answering the same questions one by one with plain
Hugging Face `generate`.

    python benchmarks/evaluate.py [--model smollm2-135m] [--data examples/support/heldout.jsonl] [--max-tokens 48]

Both answer greedily with the same fp32 weights and chat template. `evaluate` runs as the real command (one model,
no baseline, no probe) and its own figure covers answering and scoring the reference answers' loss, model loading
left out (the reference's loading is left out too); the whole command's wall time is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def one_by_one(model: str, data: str, max_tokens: int) -> dict:
    import torch

    from annotune.evaluate.data import read_questions
    from annotune.generation.loading import describe as describe_model
    from annotune.models.loading import load_model
    from annotune.models.templates import prompt_ids

    spec = describe_model(model)
    hf = load_model(spec.base).eval()
    questions = read_questions(data)
    start = time.perf_counter()
    with torch.inference_mode():
        for q in questions:
            ids = torch.tensor([prompt_ids(spec.tokenizer, q.messages)])
            hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                        do_sample=False, eos_token_id=spec.stop_ids, pad_token_id=spec.tokenizer.pad_token_id)
    seconds = time.perf_counter() - start
    return {"questions": len(questions), "seconds": seconds, "questions_per_s": len(questions) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default=str(REPO / "examples" / "support" / "heldout.jsonl"))
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--reference-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker:
        print(json.dumps(one_by_one(args.model, args.data, args.max_tokens)))
        return
    print(f"machine: {describe()}", flush=True)
    out = subprocess.run([sys.executable, __file__, "--reference-worker", "--model", args.model, "--data", args.data,
                          "--max-tokens", str(args.max_tokens)], capture_output=True, text=True, check=True)
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"plain generate, one by one: {ref['questions']} questions in {ref['seconds']:.1f} s = "
          f"{ref['questions_per_s']:.2f} questions/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "annotune"), "evaluate", args.model, "--data", args.data,
                        "--no-baseline", "--no-probe", "--max-new-tokens", str(args.max_tokens), "--out", tmp],
                       check=True, capture_output=True)
        wall = time.perf_counter() - started
        results = json.loads((Path(tmp) / "results.json").read_text())
    rate = results["questions"] / results["seconds"]
    print(f"annotune evaluate: {results['questions']} questions in {results['seconds']:.1f} s (answers and "
          f"reference losses) = {rate:.2f} questions/s, {rate / ref['questions_per_s']:.2f}x one by one "
          f"(target >= 3x); the whole command took {wall:.1f} s with loading")


if __name__ == "__main__":
    main()
