"""`annotune evaluate RUN [RUN ...] --data HELDOUT`: base vs tuned on held-out questions, a report, and the
flywheel back to the workbench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annotune.errors import AnnotuneError

GATES = ("key_accuracy", "exact_match", "token_f1", "rouge_l", "stopped_on_own", "retention", "judge")


def register(sub) -> None:
    from annotune.cli import add_generation_arguments, add_progress_argument, add_routing_argument

    p = sub.add_parser("evaluate", help="score runs against their base model on held-out questions",
                       description="Answer held-out questions with each run and its baseline, score them (key "
                                   "accuracy, exact match, token F1, ROUGE-L, reference perplexity, general "
                                   "ability kept), and write results.json, answers.jsonl, probe.jsonl and "
                                   "report.html.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder or model reference; NAME=RUN names it")
    p.add_argument("--data", required=True, help="held-out questions in any dataset format; the last assistant "
                                                 "turn is the reference, an optional `keys` list per record")
    p.add_argument("--format", help="data format; detected when unset")
    p.add_argument("--baseline", action="append", default=None, metavar="MODEL",
                   help="model or run to compare against (repeatable; default: the first run's base model)")
    p.add_argument("--no-baseline", action="store_true", help="evaluate the runs alone")
    p.add_argument("--out", help="output folder (default: RUN/eval-DATA for the first run)")
    p.add_argument("--no-probe", action="store_true", help="skip the general-knowledge probe")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint of a judge model (key: $ANNOTUNE_JUDGE_API_KEY)")
    p.add_argument("--judge-model", help="the judge's model name (with --judge-url)")
    p.add_argument("--fail-under", action="append", default=[], metavar="METRIC=VALUE",
                   help=f"exit 1 when a run scores below VALUE (0-1 or a percentage); METRIC: {', '.join(GATES)}")
    p.add_argument("--to-workbench", metavar="PROJECT", help="send weak answers to this correct or compare project")
    p.add_argument("--db", help="workbench database for --to-workbench (default: $ANNOTUNE_DB or the home's)")
    p.add_argument("--url", help="a running workbench for --to-workbench (token in $ANNOTUNE_TOKEN)")
    p.add_argument("--weak-below", type=float, default=0.5,
                   help="without keys, an answer under this token F1 counts as wrong (default 0.5)")
    add_generation_arguments(p)
    add_routing_argument(p)
    add_progress_argument(p)
    p.set_defaults(func=run_evaluate)


def parse_gates(texts: list[str]) -> dict[str, float]:
    gates = {}
    for text in texts:
        metric, sep, value = text.partition("=")
        if not sep or metric not in GATES:
            raise AnnotuneError(f"--fail-under {text}: expected METRIC=VALUE with METRIC one of {', '.join(GATES)}")
        try:
            number = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
        except ValueError:
            raise AnnotuneError(f"--fail-under {text}: {value!r} is not a number") from None
        if not 0 <= number <= 1:
            raise AnnotuneError(f"--fail-under {text}: give a share between 0 and 1, or a percentage")
        gates[metric] = number
    return gates


def gate_failures(report: dict, gates: dict[str, float]) -> list[str]:
    failures = []
    for name, entry in report["models"].items():
        if entry["role"] != "run":
            continue
        for metric, floor in gates.items():
            value = _gate_value(entry, metric)
            if value is None:
                failures.append(f"{name}: {metric} was not measured (no keys in the data, no baseline, or no "
                                "judge)")
            elif value < floor:
                failures.append(f"{name}: {metric} {value:.1%} is under {floor:.1%}")
    return failures


def _gate_value(entry: dict, metric: str) -> float | None:
    if metric == "stopped_on_own":
        return entry.get(metric)
    if metric == "retention":
        return (entry.get("retention") or {}).get("share")
    if metric == "judge":
        return (entry.get("judge") or {}).get("score")
    return (entry.get(metric) or {}).get("mean")


def default_baseline(run: str) -> list[str]:
    """The first run's base model, LoRA or full fine-tune alike. A full fine-tune carries its own weights, so its
    base is only compared with where it is still there: a base folder or file since moved leaves it without one
    (said on stderr) rather than failing a run that loads without it."""
    from annotune.generation.loading import split_name
    from annotune.runs import RunFolder, is_run_dir

    path = Path(split_name(run)[1]).expanduser()
    if not is_run_dir(path):
        return []
    folder = RunFolder(path)
    base = folder.info.get("base_model", {})
    if not base:
        return []
    ref = base.get("name") if base.get("kind") == "embedded" else base.get("path") or base.get("ref")
    if folder.adapter_dir is None and base.get("kind") in ("folder", "gguf") and not Path(ref).exists():
        print(f"No baseline: {path} was fully fine-tuned from {ref}, which is not there any more "
              "(pass --baseline MODEL to compare with another)", file=sys.stderr)
        return []
    return [f"{folder.base_label()}={ref}"]


def run_evaluate(args: argparse.Namespace) -> int:
    from annotune.config import build_config
    from annotune.evaluate.run import evaluate
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import split_name

    gates = parse_gates(args.fail_under)
    if bool(args.judge_url) != bool(args.judge_model):
        raise AnnotuneError("--judge-url and --judge-model go together")
    client = None
    if args.to_workbench and args.url:
        from annotune.annotate.cli import api_client

        client = api_client(args)  # --url with --db, or without a token, is refused before any work
    cfg = build_config(GenerationConfig, args)
    baselines = [] if args.no_baseline else (args.baseline or default_baseline(args.runs[0]))
    first = Path(split_name(args.runs[0])[1])
    out = Path(args.out) if args.out else (first if first.is_dir() else Path(".")) / f"eval-{Path(args.data).stem}"
    judge = None
    if args.judge_url:
        from annotune.evaluate.judge import Judge

        judge = Judge(args.judge_url, args.judge_model)
    report = evaluate(args.runs, args.data, baselines, out, cfg, args.format, probe=not args.no_probe, judge=judge,
                      routing=not args.no_routing, progress=not args.no_progress)
    print_summary(report)
    print(f"\nReport: {out / 'report.html'}\nEvery answer: {out / 'answers.jsonl'}")
    if args.to_workbench:
        from annotune.evaluate.flywheel import send

        runs = [n for n, e in report["models"].items() if e["role"] == "run"]
        base = next((n for n, e in report["models"].items() if e["role"] == "baseline"), None)
        counts = send(out / "answers.jsonl", args.to_workbench, runs[0], base, args.weak_below, db_url=args.db,
                      client=client)
        print(f"Workbench project {args.to_workbench}: {counts['added']} new tasks "
              f"({counts['already_there']} already there, from {counts['tasks']} weak answers of {runs[0]})")
    failures = gate_failures(report, gates)
    for failure in failures:
        print(f"fail-under: {failure}", file=sys.stderr)
    return 1 if failures else 0


def print_summary(report: dict) -> None:
    from annotune.evaluate.report import LABELS, p_text

    metrics = [m for m in LABELS if any(m in e for e in report["models"].values())]
    print(f"\n{'model':<20}" + "".join(f"{LABELS[m]:>22}" for m in metrics) + f"{'stopped':>9}{'kept':>12}")
    for name, entry in report["models"].items():
        cells = []
        for metric in metrics:
            value = entry.get(metric)
            low, high = value["ci95"]
            cells.append(f"{value['mean']:>8.1%} [{low:.0%}-{high:.0%}]".rjust(22))
        kept = entry.get("retention")
        kept_text = f"{kept['kept']}/{kept['of']}" if kept else "-"
        print(f"{name[:19]:<20}" + "".join(cells) + f"{entry['stopped_on_own']:>9.0%}{kept_text:>12}")
        routed = entry.get("routed_to_base")
        if routed:
            print(f"{'':<20}routed to the base model: {routed['questions']} of {report['questions']} questions"
                  + (f", {routed['probe']} of {routed['probe_of']} probe questions" if routed.get("probe_of") else ""))
        for metric, test in entry.get("paired", {}).items():
            if metric == metrics[0]:
                print(f"{'':<20}vs {entry['against']}: {test['difference'] * 100:+.1f} points "
                      f"[{test['ci95'][0] * 100:+.1f}, {test['ci95'][1] * 100:+.1f}], {p_text(test['p_value'])}")
