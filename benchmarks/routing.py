"""Routing, measured: where a run's router sends held-out domain questions and the everyday probe, and what routing
costs the engine in tokens per second.

    python benchmarks/routing.py runs/a runs/b --data benchmarks/domains/transit/heldout.jsonl
    python benchmarks/routing.py runs/a --data heldout.jsonl --speed     # also answer with and without routing

For each run: every held-out question, every probe question and every request of `everyday_requests.jsonl`
(39 everyday requests of other kinds than the probe's: instructions, chit-chat, sums, advice; none of them is a
probe question or one of the router's own everyday prompts) is prefilled once through the run's engine (one token
generated), which says where the router sent it; a domain question should go to the run ("tuned"), the others to
the base model. With --speed, the engine then answers the first 48 held-out questions and the first
16 probe questions (greedy, up to 64 tokens each, all submitted at once, batch 16), with routing and without
(`--no-routing`: the adapter merged into the weights, as served before routing existed), and prints completion
tokens per second beside the machine's matmul peak. Accuracy of the answers is `annotune evaluate`'s job.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from annotune.dataset.files import read_jsonl
from annotune.evaluate.data import read_questions
from annotune.evaluate.run import load_probe
from annotune.generation.config import GenerationConfig
from annotune.generation.loading import load_engine


EVERYDAY = Path(__file__).with_name("everyday_requests.jsonl")


def routes(run: str, questions: list[list[dict]], probe: list[list[dict]], everyday: list[list[dict]]) -> dict:
    with load_engine(f"run={run}") as engine:
        if engine.served("run").router is None:
            raise SystemExit(f"{run} has no router (a full fine-tune, or trained before routing existed)")
        results = engine.generate("run", questions + probe + everyday, GenerationConfig(max_new_tokens=1))
    to_base = [r.route == "base" for r in results]
    n, m = len(questions), len(questions) + len(probe)
    return {"heldout_to_run": n - sum(to_base[:n]), "heldout": n, "probe_to_base": sum(to_base[n:m]),
            "probe": len(probe), "everyday_to_base": sum(to_base[m:]), "everyday": len(everyday)}


def speed(run: str, prompts: list[list[dict]], routing: bool) -> float:
    cfg = GenerationConfig(max_new_tokens=64)
    with load_engine(f"run={run}", routing=routing, max_batch=16) as engine:
        engine.generate("run", prompts[:4], cfg)  # warm-up
        start = time.perf_counter()
        results = engine.generate("run", prompts, cfg)
        return sum(r.completion_tokens for r in results) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data", required=True, help="held-out questions (any dataset format evaluate reads)")
    parser.add_argument("--speed", action="store_true", help="also time answers with and without routing")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    from machine import describe

    print(describe())
    questions = [q.messages for q in read_questions(args.data)]
    probe = [[{"role": "user", "content": p["question"]}] for p in load_probe()]
    everyday = [[{"role": "user", "content": p["prompt"]}] for p in read_jsonl(EVERYDAY)]
    report = {}
    for run in args.runs:
        figures = routes(run, questions, probe, everyday)
        line = (f"{run}: held-out questions to the run {figures['heldout_to_run']}/{figures['heldout']}, "
                f"probe questions to the base {figures['probe_to_base']}/{figures['probe']}, other everyday "
                f"requests to the base {figures['everyday_to_base']}/{figures['everyday']}")
        if args.speed:
            mixed = questions[:48] + probe[:16]
            figures["tokens_per_s_routed"] = speed(run, mixed, True)
            figures["tokens_per_s_unrouted"] = speed(run, mixed, False)
            line += (f"; {figures['tokens_per_s_routed']:.0f} tokens/s routed, "
                     f"{figures['tokens_per_s_unrouted']:.0f} without routing")
        print(line, flush=True)
        report[run] = figures
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
