"""`annotune quickstart`: train the embedded model on the bundled support example and compare base vs tuned.

The example (examples/support) holds a fictional company's support knowledge that no base model can know. The
model trains on several phrasings of each fact and is scored by `annotune evaluate` on other phrasings held out
from training: an answer counts as correct when it contains the fact's key string (case-insensitive). Training runs
with `annotune train`'s defaults; its validation split (which picks the epoch saved) comes from the training chats.
The held-out questions are only ever the test: nothing is chosen on them.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from annotune.dataset.files import read_jsonl
from annotune.errors import AnnotuneError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support"
ANSWER_TOKENS = 48  # the example's answers are one sentence


def example_dir() -> Path:
    if not (EXAMPLE / "train.jsonl").is_file():
        raise AnnotuneError(f"the bundled example is missing ({EXAMPLE}); run the quickstart from an annotune checkout")
    return EXAMPLE


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(rows: list[dict], limit: int | None = None) -> None:
    widths = (38, 30, 30)
    header = f"{'question':<{widths[0]}}  {'base answer':<{widths[1]}}  {'tuned answer':<{widths[2]}}  base tuned"
    print(header)
    print("-" * len(header))
    for row in rows[:limit]:
        print(f"{_short(row['question'], widths[0]):<{widths[0]}}  {_short(row['base'], widths[1]):<{widths[1]}}  "
              f"{_short(row['tuned'], widths[2]):<{widths[2]}}  {'yes' if row['base_ok'] else 'no':>4} "
              f"{'yes' if row['tuned_ok'] else 'no':>5}")
    if limit is not None and len(rows) > limit:
        print(f"... {len(rows) - limit} more rows in the report")


def train_and_score(model: str, run_dir: Path, progress: bool = True, **overrides) -> dict:
    """Train on the example's training chats, then evaluate base and tuned on the held-out questions."""
    from annotune.config import TrainConfig
    from annotune.evaluate.run import evaluate
    from annotune.generation.config import GenerationConfig
    from annotune.train.sft import train

    example = example_dir()
    cfg = TrainConfig(**{"data": str(example / "train.jsonl"), "model": model, "out": str(run_dir),
                         "overwrite": True, "progress": progress, **overrides})
    started = time.perf_counter()
    train(cfg)
    train_seconds = time.perf_counter() - started
    print("\n[2/2] Answering the held-out questions with the base and the tuned model ...", flush=True)
    results = evaluate([f"tuned={run_dir}"], str(example / "heldout.jsonl"), [f"base={model}"], run_dir / "eval",
                       GenerationConfig(max_new_tokens=ANSWER_TOKENS), progress=progress)
    answers = read_jsonl(run_dir / "eval" / "answers.jsonl")
    rows = [{"id": a["id"], "question": a["question"], "base": a["answers"]["base"]["text"],
             "tuned": a["answers"]["tuned"]["text"], "base_ok": a["answers"]["base"]["key_accuracy"] == 1,
             "tuned_ok": a["answers"]["tuned"]["key_accuracy"] == 1} for a in answers]
    tuned = results["models"]["tuned"]
    return {"train_seconds": round(train_seconds, 1), "config": overrides,
            "base_accuracy": results["models"]["base"]["key_accuracy"]["mean"],
            "tuned_accuracy": tuned["key_accuracy"]["mean"], "tuned_ci95": tuned["key_accuracy"]["ci95"],
            "p_value": tuned["paired"]["key_accuracy"]["p_value"], "retention": tuned.get("retention"),
            "routed": tuned.get("routed_to_base"), "rows": rows}


def quickstart(out: str = "runs/quickstart", model: str = "smollm2-135m", epochs: int | None = None) -> int:
    example = example_dir()
    run_dir = Path(out)
    n_train = sum(1 for line in (example / "train.jsonl").read_text().splitlines() if line.strip())
    n_heldout = sum(1 for line in (example / "heldout.jsonl").read_text().splitlines() if line.strip())
    print(f"annotune quickstart: {n_train} training chats about a fictional company, {n_heldout} held-out "
          f"questions.\n\n[1/2] Fine-tuning {model} ...", flush=True)
    report = train_and_score(model, run_dir, **({"epochs": epochs} if epochs else {}))
    rows = report["rows"]
    print()
    print_table(rows, limit=20)
    low, high = report["tuned_ci95"]
    kept = report["retention"]
    kept_line = (f"General questions the base model got right: the tuned model kept {kept['kept']} of "
                 f"{kept['of']}.\n        " if kept else "")
    routed = report["routed"]
    if routed:
        kept_line += (f"Its router answered {routed['probe']} of the {routed['probe_of']} general questions and "
                      f"{routed['questions']} of the {len(rows)} held-out ones with the base model "
                      "(docs/serving.md, Routing).\n        ")
    print(textwrap.dedent(f"""
        Held-out accuracy: base {report['base_accuracy']:.0%}  ->  tuned {report['tuned_accuracy']:.0%}  \
(95% interval {low:.0%}-{high:.0%}, {len(rows)} questions, p = {report['p_value']:.4f})
        {kept_line}Training took {report['train_seconds']:.0f} s. The run is in {run_dir}/ (adapter, config, metrics, \
loss.png);
        the evaluation is in {run_dir}/eval/ (report.html, answers.jsonl, probe.jsonl, results.json).
        Chat with it:  annotune chat {run_dir}
        Serve it:      annotune serve {run_dir}    (chat page and OpenAI-compatible API on http://127.0.0.1:8000)
    """).rstrip())
    return 0
