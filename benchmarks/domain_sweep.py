"""Cross-domain validation of training settings: train on every domain set, score each, judge by the worst domain.

    python benchmarks/domains/build.py                      # the domain sets (checked in; rebuild after edits)
    python benchmarks/domain_sweep.py                       # every setting on every domain
    python benchmarks/domain_sweep.py --settings defaults --domains bank --json sweep.json
    python benchmarks/domain_sweep.py --budget-minutes 60 --max-runs 8
    python benchmarks/domain_sweep.py --setting "nef10=--neftune 10" --settings defaults,nef10   # a setting of your own
    python benchmarks/domain_sweep.py --settings defaults,nef10 --seeds 42,7   # each setting over two seeds
    python benchmarks/domain_sweep.py --domains transit,bank --thin 2   # every 2nd fact keeps one phrasing only

For each domain of benchmarks/domains/ and each setting (named below; `defaults` first), this runs
`annotune train DOMAIN/train.jsonl` with no options beyond the setting's (plus --out, --overwrite and
--no-progress, which change where it goes and what is shown, not what is trained); then one `annotune evaluate`
call scores all of the domain's runs on its heldout.jsonl (greedy, with the general-knowledge probe and the base
model as baseline, which answers once per domain; each run with its router, as `serve` answers, unless
--no-routing). It collects
held-out key accuracy, general answers kept (of those the base model got right) and the wall time of the train
command (model load included), prints a table per setting with the WORST domain, and writes everything as JSON.

A setting is judged by its worst domain, not the mean: its score is the lowest of held-out accuracy and kept share
over all domains, and the best setting is the one with the highest score among those that ran on every domain
(ties go to the shorter longest training). With --seeds, each setting trains once per seed on every domain and
its figures on a domain are the means over the seeds (each seed's are kept in the JSON): one run's held-out
accuracy on these sets moves by 20 points between seeds, so a single run per setting decides little. A seed also
draws its own rewordings of the training questions (train/paraphrase.py), so the seeds measure the spread between
draws too, and a new seed's first run generates them (cached for the next). The target
is >= 90% held-out and >= 90% kept on every domain, with training <= 5 min.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOMAINS = Path(__file__).resolve().parent / "domains"
TARGET = {"heldout": 0.9, "kept": 0.9, "train_seconds": 300}
EVALUATE_OPTIONS: list[str] = []  # ["--no-routing"] with --no-routing: judged as an exported model answers

# Candidate settings: the options each passes to `annotune train`. `defaults` passes none.
SETTINGS: dict[str, list[str]] = {
    "defaults": [],
    "no-replay": ["--replay", "0"],
    "replay-0.5": ["--replay", "0.5"],
    "all-rows": ["--val-size", "0"],
    "epochs-8": ["--epochs", "8"],
    "epochs-8-all-rows": ["--epochs", "8", "--val-size", "0"],
    "epochs-8-all-rows-no-replay": ["--epochs", "8", "--val-size", "0", "--replay", "0"],
    "lr-1e-3-epochs-8": ["--lr", "1e-3", "--epochs", "8"],
    "rank-16-epochs-8": ["--lora-r", "16", "--lora-alpha", "32", "--epochs", "8"],
}


def _annotune() -> str:
    beside = Path(sys.executable).parent / "annotune"  # the one installed with this interpreter
    return str(beside) if beside.exists() else "annotune"


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def train(domain: Path, setting: list[str], run_dir: Path, model: str | None) -> dict:
    """One training run on ``domain`` with ``setting``: its wall time (model load included) and size."""
    model_args = ["--model", model] if model else []
    started = time.perf_counter()
    _run([_annotune(), "train", str(domain / "train.jsonl"), *model_args, *setting, "--out", str(run_dir),
          "--overwrite", "--no-progress"])
    run = json.loads((run_dir / "run.json").read_text())
    return {"train_seconds": round(time.perf_counter() - started, 1), "steps": run.get("steps"),
            "examples": run.get("examples"), "final": run.get("final")}


def thinned(domain: Path, out: Path, every: int) -> Path:
    """A copy of ``domain`` in which every ``every``-th fact (chats with the same trained answers, in order of first
    appearance) keeps only its first phrasing: a domain whose facts are asked different numbers of ways, made from
    any domain. The held-out set is the same."""
    from annotune.dataset import load_valid, write_dataset
    from annotune.dataset.split import trained_answers

    order: dict[frozenset[str], int] = {}
    kept = []
    for conv in load_valid(domain / "train.jsonl", "openai"):
        fact = trained_answers(conv)
        if fact in order and order[fact] % every == every - 1:
            continue  # a later phrasing of a thinned fact
        order.setdefault(fact, len(order))
        kept.append(conv)
    out.mkdir(parents=True, exist_ok=True)
    write_dataset(kept, out / "train.jsonl", "openai")
    shutil.copy(domain / "heldout.jsonl", out / "heldout.jsonl")
    return out


def evaluate(domain: Path, runs: dict[str, Path], out: Path, max_new_tokens: int) -> dict[str, dict]:
    """All of a domain's runs in one `annotune evaluate` call, so the base model answers (held-out and probe)
    once per domain rather than once per run."""
    _run([_annotune(), "evaluate", *(f"{name}={path}" for name, path in runs.items()), "--data",
          str(domain / "heldout.jsonl"), "--out", str(out), "--max-new-tokens", str(max_new_tokens),
          *EVALUATE_OPTIONS])
    models = json.loads((out / "results.json").read_text())["models"]
    base = next(entry for entry in models.values() if entry["role"] == "baseline")
    figures = {}
    for name in runs:
        tuned, kept = models[name], models[name].get("retention") or {}
        figures[name] = {"heldout": tuned["key_accuracy"]["mean"], "heldout_ci95": tuned["key_accuracy"]["ci95"],
                         "base_heldout": base["key_accuracy"]["mean"], "kept": kept.get("share"),
                         "kept_of": kept.get("of"), "kept_n": kept.get("kept"),
                         "routed_to_base": tuned.get("routed_to_base")}
    return figures


def worst(rows: dict[str, dict]) -> dict:
    """The worst domain on each figure, and the setting's score: its lowest held-out or kept share."""
    heldout = min(rows.items(), key=lambda kv: kv[1]["heldout"])
    kept = min(rows.items(), key=lambda kv: kv[1]["kept"] if kv[1]["kept"] is not None else 1.0)
    slowest = max(rows.items(), key=lambda kv: kv[1]["train_seconds"])
    kept_share = kept[1]["kept"] if kept[1]["kept"] is not None else 1.0
    return {"heldout": [heldout[0], heldout[1]["heldout"]], "kept": [kept[0], kept[1]["kept"]],
            "train_seconds": [slowest[0], slowest[1]["train_seconds"]],
            "score": min(heldout[1]["heldout"], kept_share),
            "meets_target": heldout[1]["heldout"] >= TARGET["heldout"] and kept_share >= TARGET["kept"]
            and slowest[1]["train_seconds"] <= TARGET["train_seconds"]}


def _percent(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_setting(name: str, rows: dict[str, dict], summary: dict | None) -> None:
    print(f"\nsetting {name}: {' '.join(SETTINGS[name]) or '(no options)'}")
    print(f"  {'domain':<10}{'held-out':>10}{'(base)':>8}{'kept':>12}{'train s':>9}{'steps':>7}")
    for domain, r in rows.items():
        kept = f"{r['kept_n']}/{r['kept_of']} {_percent(r['kept'])}" if r["kept_of"] else "-"
        spread = (f"  seeds {', '.join(_percent(x['heldout']) for x in r['seeds'].values())}"
                  if "seeds" in r else "")
        print(f"  {domain:<10}{_percent(r['heldout']):>10}{_percent(r['base_heldout']):>8}"
              f"{kept:>12}{r['train_seconds']:>9.0f}{r['steps'] or 0:>7}{spread}")
    if summary:
        print(f"  WORST     held-out {_percent(summary['heldout'][1])} ({summary['heldout'][0]}), kept "
              f"{_percent(summary['kept'][1])} ({summary['kept'][0]}), longest training "
              f"{summary['train_seconds'][1]:.0f} s ({summary['train_seconds'][0]}); meets the target: "
              f"{'yes' if summary['meets_target'] else 'no'}")


def combine(per_seed: dict[int, dict]) -> dict:
    """A setting's figures on one domain over its seeds: the mean of each (so one lucky or unlucky seed does not
    decide), with every seed's own figures and the range of held-out accuracy beside it."""
    rows = list(per_seed.values())
    if len(rows) == 1:
        return rows[0]

    def mean(key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    kept_of = [r["kept_of"] for r in rows if r.get("kept_of")]
    return {"heldout": mean("heldout"), "base_heldout": rows[0]["base_heldout"], "kept": mean("kept"),
            "kept_n": round(mean("kept_n"), 1) if kept_of else None, "kept_of": kept_of[0] if kept_of else None,
            "train_seconds": mean("train_seconds"), "steps": rows[0]["steps"],
            "heldout_range": [min(r["heldout"] for r in rows), max(r["heldout"] for r in rows)],
            "seeds": per_seed}


def sweep(settings: list[str], domains: list[str], work: Path, model: str | None, max_new_tokens: int,
          max_runs: int | None, budget_s: float | None, seeds: list[int] | None = None, thin: int = 0) -> dict:
    started, runs = time.perf_counter(), 0
    results: dict[str, dict[str, dict]] = {name: {} for name in settings}
    skipped: list[str] = []
    for domain in domains:
        source = thinned(DOMAINS / domain, work / "thinned" / domain, thin) if thin else DOMAINS / domain
        trained: dict[str, Path] = {}
        per_seed: dict[str, dict[int | None, dict]] = {}
        for name in settings:
            for seed in seeds or [None]:
                run = name if seed is None else f"{name}-seed{seed}"
                over_budget = budget_s is not None and time.perf_counter() - started > budget_s
                if over_budget or (max_runs is not None and runs >= max_runs):
                    skipped.append(f"{run}/{domain}")
                    continue
                print(f"[{domain}] training with {run} ...", flush=True)
                trained[run] = work / domain / run
                options = SETTINGS[name] + ([] if seed is None else ["--seed", str(seed)])
                per_seed.setdefault(name, {})[seed] = train(source, options, trained[run], model)
                runs += 1
        if trained:
            print(f"[{domain}] evaluating {', '.join(trained)} ...", flush=True)
            figures = evaluate(source, trained, work / domain / "eval", max_new_tokens)
            for name, by_seed in per_seed.items():
                for seed, row in by_seed.items():
                    row.update(figures[name if seed is None else f"{name}-seed{seed}"])
                if seeds is None or len(by_seed) == len(seeds):  # a setting cut short by the bounds is not scored
                    results[name][domain] = combine(by_seed)
    summaries = {n: worst(r) for n, r in results.items() if len(r) == len(domains)}
    for name in settings:
        print_setting(name, results[name], summaries.get(name))
    best = max(summaries, key=lambda n: (summaries[n]["score"], -summaries[n]["train_seconds"][1]), default=None)
    if best:
        print(f"\nbest setting by its worst domain: {best} (score {_percent(summaries[best]['score'])})")
    if skipped:
        print(f"not run (over the time or count bound): {', '.join(skipped)}")
    return {"settings": {n: SETTINGS[n] for n in settings}, "domains": domains, "thin": thin, "seeds": seeds,
            "results": results,
            "worst": summaries, "best": best, "not_run": skipped, "target": TARGET,
            "sweep_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted(p.name for p in DOMAINS.iterdir() if (p / "train.jsonl").is_file())
    parser.add_argument("--domains", default=",".join(names), help=f"comma-separated (default: all of {names})")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=OPTIONS",
                        help="an extra setting, e.g. e12='--epochs 12 --val-size 0' (repeatable; use it in --settings)")
    parser.add_argument("--model", help="base model (default: train's own default)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit in evaluation")
    parser.add_argument("--seeds", help="comma-separated seeds: every setting trains once per seed and is judged by "
                        "its mean over them (default: train's own seed, one run)")
    parser.add_argument("--thin", type=int, default=0, metavar="N",
                        help="train on a copy of each domain in which every N-th fact keeps only its first phrasing")
    parser.add_argument("--max-runs", type=int, help="train at most this many runs")
    parser.add_argument("--budget-minutes", type=float, help="start no new run after this many minutes")
    parser.add_argument("--work", help="keep the run folders here (default: a temporary folder, removed)")
    parser.add_argument("--json", help="write the results here (default: print only)")
    parser.add_argument("--no-routing", action="store_true",
                        help="evaluate every run with its adapter on every question, as an exported model answers "
                             "(default: as `serve` answers, with the run's router)")
    args = parser.parse_args()
    if args.no_routing:
        EVALUATE_OPTIONS.append("--no-routing")
    for extra in args.setting:
        name, sep, options = extra.partition("=")
        if not sep or not name:
            parser.error(f"--setting {extra!r}: expected NAME=OPTIONS")
        SETTINGS[name] = shlex.split(options)
    settings, domains = args.settings.split(","), args.domains.split(",")
    unknown = [s for s in settings if s not in SETTINGS] + [d for d in domains if d not in names]
    if unknown:
        parser.error(f"unknown setting or domain: {', '.join(unknown)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: expected whole numbers separated by commas, e.g. 42,7")
    if seeds and any("--seed" in SETTINGS[s] for s in settings):
        parser.error("--seeds: a setting that sets --seed itself cannot also run over --seeds")
    if args.thin < 0:
        parser.error(f"--thin {args.thin}: expected a positive whole number (2: every second fact)")
    from machine import describe

    machine = describe()
    print(machine)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="domain-sweep-"))
    try:
        report = sweep(settings, domains, work, args.model, args.max_new_tokens, args.max_runs,
                       args.budget_minutes * 60 if args.budget_minutes else None, seeds, args.thin)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, **report}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
