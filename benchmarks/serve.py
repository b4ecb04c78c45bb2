"""Serving throughput and latency of `annotune serve` against plain Hugging Face `generate`, on one machine.

    python benchmarks/serve.py [--model smollm2-135m] [--max-tokens 64] [--levels 1,4,8,16] [--dtype fp32]
        [--out result.json]

1. The reference: the same prompts answered one after another with `model.generate` (greedy, the same weights in
   the same dtype on the same device as the server: the GPU where there is one, the same chat template), in a child
   process.
2. `annotune serve MODEL` in a child process on 127.0.0.1; every request streams (OpenAI API, greedy) so the time to
   first token is measured too. Single stream: requests one at a time. Then 1, 4, 8 and 16 concurrent clients,
   each sending its requests back to back; throughput is all completion tokens over the level's wall time, latency
   is per request (p50 / p95).
The machine's matmul peak is printed first: compare figures only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))  # the suite's server helper
from machine import describe  # noqa: E402
from workbench_fixtures import Server  # noqa: E402

PROMPTS = [
    "Explain how a refrigerator keeps food cold.", "Describe the water cycle for a ten-year-old.",
    "Write a short story about a lighthouse keeper.", "What should I pack for a week of hiking?",
    "Explain the difference between weather and climate.", "Give me tips for learning a new language.",
    "Describe how bread is made, step by step.", "Why do leaves change colour in autumn?",
    "Write a polite email asking for a deadline extension.", "Explain what a budget is and how to make one.",
    "Describe a busy market in the morning.", "How do bicycles stay upright?",
    "Give advice to someone starting their first job.", "Explain how vaccines train the immune system.",
    "Describe the life of a honeybee.", "What makes a good night's sleep?",
]


def reference(model: str, max_tokens: int, dtype: str) -> dict:
    """Sequential plain `generate` in a child process (torch's threads there would slow this process's HTTP
    clients): tokens/s and latency per prompt."""
    out = subprocess.run([sys.executable, __file__, "--reference-worker", "--model", model, "--max-tokens",
                          str(max_tokens), "--dtype", dtype], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reference_worker(model: str, max_tokens: int, dtype: str) -> dict:
    import torch

    from annotune.generation.loading import DTYPES
    from annotune.generation.loading import describe as describe_model
    from annotune.models.loading import load_model

    device = "cuda" if torch.cuda.is_available() else "cpu"  # where `annotune serve` puts the model
    spec = describe_model(model)
    hf = load_model(spec.base, dtype=DTYPES[dtype], device=device).eval()
    tokenizer = spec.tokenizer
    from annotune.models.templates import prompt_ids

    ids = [prompt_ids(tokenizer, [{"role": "user", "content": p}]) for p in PROMPTS]
    with torch.inference_mode():
        hf.generate(input_ids=torch.tensor([ids[0]], device=device), max_new_tokens=4, do_sample=False)  # warm-up
        latencies, tokens, start = [], 0, time.perf_counter()
        for prompt in ids:
            t0 = time.perf_counter()
            out = hf.generate(input_ids=torch.tensor([prompt], device=device),
                              attention_mask=torch.ones(1, len(prompt), dtype=int, device=device),
                              max_new_tokens=max_tokens, do_sample=False, eos_token_id=spec.stop_ids,
                              pad_token_id=tokenizer.pad_token_id)
            latencies.append(time.perf_counter() - t0)  # generate returns the tokens: the device is done
            tokens += out.shape[1] - len(prompt)
    wall = time.perf_counter() - start
    return {"tokens": tokens, "seconds": wall, "tokens_per_s": tokens / wall, "p50_s": _pct(latencies, 50),
            "p95_s": _pct(latencies, 95)}


def _pct(values: list[float], q: int) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


SERVER_LOG = Path(tempfile.gettempdir()) / "annotune-bench-serve.log"  # the server's own log line per request


def start_server(model: str, extra: list[str]) -> Server:
    SERVER_LOG.write_text("")
    return Server(["serve", f"bench={model}", *extra], SERVER_LOG, health="/health", timeout=300).start()


HTTP = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))  # one client: making one costs ~0.1 s


def one_request(url: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, tokens = None, 0
    with HTTP.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and first is None:
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"latency": time.perf_counter() - start, "ttft": first or 0.0, "tokens": tokens}


def level(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    """``clients`` threads share ``requests`` requests, each thread sending its next one when its last is done."""
    results: list[dict] = []
    lock = threading.Lock()
    queue = list(range(requests))

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            outcome = one_request(url, PROMPTS[i % len(PROMPTS)], max_tokens)
            with lock:
                results.append(outcome)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies = [r["latency"] for r in results]
    return {"clients": clients, "requests": len(results), "tokens": sum(r["tokens"] for r in results),
            "seconds": wall, "tokens_per_s": sum(r["tokens"] for r in results) / wall,
            "p50_s": _pct(latencies, 50), "p95_s": _pct(latencies, 95),
            "ttft_p50_s": _pct([r["ttft"] for r in results], 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="the weights' dtype, for the reference and the server alike")
    parser.add_argument("--serve-args", default="", help="extra options for `annotune serve`, e.g. '--max-batch 16'")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--reference-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker:
        print(json.dumps(_reference_worker(args.model, args.max_tokens, args.dtype)))
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(f"machine: {describe()}", flush=True)
    ref = reference(args.model, args.max_tokens, args.dtype)
    print(f"plain generate, sequential: {ref['tokens_per_s']:.1f} tokens/s, p50 {ref['p50_s']:.2f} s, "
          f"p95 {ref['p95_s']:.2f} s ({ref['tokens']} tokens)", flush=True)
    server = start_server(args.model, ["--dtype", args.dtype, *args.serve_args.split()])
    url = server.url
    try:
        one_request(url, PROMPTS[0], 8)  # warm-up
        single = [one_request(url, p, args.max_tokens) for p in PROMPTS[:4]]
        decode = [(r["tokens"] - 1) / (r["latency"] - r["ttft"]) for r in single if r["tokens"] > 1]
        stream = {"ttft_s": statistics.median(r["ttft"] for r in single),
                  "tokens_per_s": statistics.median(decode)}
        print(f"single stream: time to first token {stream['ttft_s'] * 1000:.0f} ms, "
              f"{stream['tokens_per_s']:.1f} tokens/s while decoding", flush=True)
        levels = []
        print(f"\n{'clients':>7} {'requests':>8} {'tokens/s':>9} {'x generate':>10} {'p50 s':>7} {'p95 s':>7} "
              f"{'TTFT p50':>9}")
        for clients in (int(c) for c in args.levels.split(",")):
            row = level(url, clients, max(8, 2 * clients), args.max_tokens)
            row["speedup"] = row["tokens_per_s"] / ref["tokens_per_s"]
            levels.append(row)
            print(f"{clients:>7} {row['requests']:>8} {row['tokens_per_s']:>9.1f} {row['speedup']:>9.2f}x "
                  f"{row['p50_s']:>7.2f} {row['p95_s']:>7.2f} {row['ttft_p50_s'] * 1000:>7.0f}ms", flush=True)
    finally:
        server.stop()
    by_clients = {row["clients"]: row for row in levels}
    if 1 in by_clients and 8 in by_clients:
        print(f"\n8 clients: {by_clients[8]['speedup']:.2f}x sequential generate's tokens/s (target >= 3x); "
              f"p95 latency {by_clients[8]['p95_s'] / by_clients[1]['p95_s']:.2f}x a single client's "
              "(target < 2x)")
    if args.out:
        Path(args.out).write_text(json.dumps({"reference": ref, "single_stream": stream, "levels": levels},
                                             indent=2))


if __name__ == "__main__":
    main()
