"""Ingest throughput, memory and near-duplicate detection on a synthetic corpus with planted duplicates.

    .venv/bin/python benchmarks/ingest.py [--docs 100000] [--dup-rate 0.1] [--threshold 0.8]

Writes ``--docs`` documents as JSONL files of 1,000 records. A share ``--dup-rate`` of them are planted
copies of other documents, placed anywhere in the corpus: a fifth are exact copies (only case and spacing
changed), the rest near-duplicates (1% of the words, at least one, replaced and a sign-off line added; the
true Jaccard similarity of each planted pair is computed and its spread printed). Then it runs the real ``annotune ingest`` command in a child process and prints documents per
second, the child's peak memory, and dedup precision and recall against the planted groups read back from
report.json.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(rng: np.random.Generator, size: int = 20000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))))
    return sorted(words)


def base_document(rng: np.random.Generator, words: list[str], cdf: np.ndarray) -> list[list[str]]:
    """Sentences of words drawn from a Zipf-like distribution, so common words recur as in real text."""
    lengths = rng.integers(6, 18, size=rng.integers(8, 20))
    picks = np.searchsorted(cdf, rng.random(int(lengths.sum())))
    bounds = np.cumsum(lengths)[:-1]
    return [[words[i] for i in part] for part in np.split(picks, bounds)]


def render(sentences: list[list[str]], pii: str = "") -> str:
    text = " ".join(" ".join(s).capitalize() + "." for s in sentences)
    return text + (f" Contact {pii} for details." if pii else "")


def near_copy(rng: np.random.Generator, sentences: list[list[str]], words: list[str], exact: bool) -> str:
    if exact:
        return render(sentences).upper().replace(" ", "  ")
    edited = [list(s) for s in sentences]
    total = sum(len(s) for s in edited)
    for _ in range(max(1, int(total * 0.01))):
        sentence = edited[rng.integers(len(edited))]
        sentence[rng.integers(len(sentence))] = words[rng.integers(len(words))]
    return render(edited) + "\nSent from my phone."


def jaccard(a: str, b: str, k: int = 5) -> float:
    def shingles(text: str) -> set[str]:
        words = re.findall(r"\w+", text.lower())
        return {" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))}

    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def generate(root: Path, docs: int, dup_rate: float, seed: int) -> tuple[dict[tuple[str, int], int], list[float]]:
    """Write the corpus; return (file, line) -> group (the index of the original document), and the true
    Jaccard similarity of each planted copy to its original."""
    rng = np.random.default_rng(seed)
    words = vocabulary(rng)
    zipf = 1 / np.arange(1, len(words) + 1) ** 1.05
    cdf = np.cumsum(zipf / zipf.sum())
    planted = int(docs * dup_rate)
    originals = docs - planted
    bases = [base_document(rng, words, cdf) for _ in range(originals)]
    order = [("orig", i) for i in range(originals)] + [("dup", int(rng.integers(originals))) for _ in range(planted)]
    order = [order[i] for i in rng.permutation(len(order))]
    groups: dict[tuple[str, int], int] = {}
    similarities: list[float] = []
    for start in range(0, docs, 1000):
        name = f"part-{start // 1000:05d}.jsonl"
        with (root / name).open("w") as fh:
            for line, (kind, group) in enumerate(order[start:start + 1000], start=1):
                if kind == "orig":
                    pii = f"desk{group}@example.com" if group % 20 == 0 else ""
                    text = render(bases[group], pii)
                else:
                    text = near_copy(rng, bases[group], words, exact=rng.random() < 0.2)
                    similarities.append(jaccard(render(bases[group], ""), text))
                fh.write(json.dumps({"text": text, "id": f"{kind}-{group}-{line}", "likes": int(rng.integers(50))}) + "\n")
                groups[(str(root / name), line)] = group
    return groups, similarities


def score(report: dict, groups: dict[tuple[str, int], int], planted: int) -> tuple[float, float, int]:
    """Precision and recall of the dropped duplicates against the planted groups; also the drop count."""
    correct = dropped = 0
    for cluster in report["duplicates"]["clusters"]:
        kept = groups[(cluster["kept"]["path"], int(cluster["kept"]["key"].rsplit("#", 1)[1]))]
        for entry in cluster["dropped"]:
            dropped += 1
            correct += groups[(entry["path"], entry["position"]["line"])] == kept
    return (correct / dropped if dropped else 1.0), (correct / planted if planted else 1.0), dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--threshold", type=float, default=0.8, help="near_dup_threshold passed to ingest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="keep the corpus and outputs here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ingest-bench-"))
    corpus, out = work / "corpus", work / "out"
    shutil.rmtree(out, ignore_errors=True)
    corpus.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    groups, similarities = generate(corpus, args.docs, args.dup_rate, args.seed)
    print(f"generated {args.docs} documents in {time.perf_counter() - started:.1f} s ({corpus})")
    annotune = Path(sys.executable).parent / "annotune"
    command = [str(annotune), "ingest", str(corpus), "--out", str(out), "--no-progress",
               "--near-dup-threshold", str(args.threshold), "--min-language-score", "0"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    report = json.loads((out / "report.json").read_text())
    precision, recall, dropped = score(report, groups, int(args.docs * args.dup_rate))
    print(f"documents: {args.docs}, planted duplicates: {int(args.docs * args.dup_rate)}, dropped as duplicates: "
          f"{dropped} (exact {report['duplicates']['exact']}, near {report['duplicates']['near']})")
    print(f"other drops: { {k: v for k, v in report['drops'].items() if v and not k.startswith('duplicate')} }")
    print(f"chunks: {report['chunks']['total']}")
    if similarities:
        quantiles = np.quantile(similarities, [0, 0.05, 0.5]).round(3).tolist()
        above = np.mean(np.array(similarities) >= args.threshold)
        print(f"planted pairs, true Jaccard of word 5-grams: min {quantiles[0]}, 5th percentile {quantiles[1]}, "
              f"median {quantiles[2]}; {above:.1%} at or above the threshold {args.threshold}")
    print(f"time: {seconds:.1f} s, {args.docs / seconds:.0f} documents/s (whole command, start-up included)")
    print(f"peak memory: {peak_mb:.0f} MB")
    print(f"dedup precision: {precision:.4f}, recall: {recall:.4f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
