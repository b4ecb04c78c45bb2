"""`annotune quickstart`: train the embedded model on the bundled support example and compare base vs tuned.

The example (examples/support) holds a fictional company's support knowledge that no base model can know. The
model trains on several phrasings of each fact and is scored on other phrasings held out from training: an answer
counts as correct when it contains the fact's key string (case-insensitive).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path

from annotune.errors import AnnotuneError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support"


def example_dir() -> Path:
    if not (EXAMPLE / "train.jsonl").is_file():
        raise AnnotuneError(f"the bundled example is missing ({EXAMPLE}); run the quickstart from an annotune checkout")
    return EXAMPLE


def load_heldout(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def is_correct(answer: str, key: str) -> bool:
    return key.lower() in answer.lower()


def _write_val(heldout: list[dict], path: Path) -> None:
    """Held-out questions with their reference answers, for the validation loss during training."""
    with path.open("w", encoding="utf-8") as fh:
        for item in heldout:
            messages = item["messages"] + [{"role": "assistant", "content": item["reference"]}]
            fh.write(json.dumps({"messages": messages, "id": item["id"]}, ensure_ascii=False) + "\n")


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


def answer_all(ref: str, heldout: list[dict]) -> list[str]:
    from annotune.generation.config import GenerationConfig
    from annotune.generation.loading import load_engine

    engine = load_engine(ref, max_batch=40)
    try:
        results = engine.generate(next(iter(engine.models)), [item["messages"] for item in heldout],
                                  GenerationConfig(max_new_tokens=48))
    finally:
        engine.close()
    return [r.text.strip() for r in results]


def train_and_score(model: str, run_dir: Path, **overrides) -> dict:
    """Train on the example's training chats, answer the held-out questions with base and tuned model, score."""
    from annotune.config import TrainConfig
    from annotune.train.sft import train

    example = example_dir()
    heldout = load_heldout(example / "heldout.jsonl")
    staging = run_dir.with_name(run_dir.name + "-data")
    staging.mkdir(parents=True, exist_ok=True)
    # A quarter of the held-out questions give the validation loss; fewer keeps the epoch-end check cheap.
    _write_val(heldout[::4], staging / "heldout-val.jsonl")
    cfg = TrainConfig(data=str(example / "train.jsonl"), val_data=str(staging / "heldout-val.jsonl"), model=model,
                      out=str(run_dir), overwrite=True, **overrides)
    started = time.perf_counter()
    try:
        train(cfg)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    train_seconds = time.perf_counter() - started

    print("\n[2/3] Answering the held-out questions with the base model ...")
    base = answer_all(model, heldout)
    print("[3/3] Answering them with the tuned model ...")
    tuned = answer_all(str(run_dir), heldout)
    rows = [{"id": item["id"], "question": item["messages"][-1]["content"], "key": item["key"], "base": b, "tuned": t,
             "base_ok": is_correct(b, item["key"]), "tuned_ok": is_correct(t, item["key"])}
            for item, b, t in zip(heldout, base, tuned)]
    report = {"train_seconds": round(train_seconds, 1), "config": overrides,
              "base_accuracy": sum(r["base_ok"] for r in rows) / len(rows),
              "tuned_accuracy": sum(r["tuned_ok"] for r in rows) / len(rows), "rows": rows}
    (run_dir / "quickstart.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def quickstart(out: str = "runs/quickstart", model: str = "smollm2-135m", epochs: int | None = None) -> int:
    example = example_dir()
    run_dir = Path(out)
    n_train = sum(1 for line in (example / "train.jsonl").read_text().splitlines() if line.strip())
    n_heldout = len(load_heldout(example / "heldout.jsonl"))
    print(f"annotune quickstart: {n_train} training chats about a fictional company, {n_heldout} held-out "
          f"questions.\n\n[1/3] Fine-tuning {model} ...")
    report = train_and_score(model, run_dir, **({"epochs": epochs} if epochs else {}))
    rows = report["rows"]
    print()
    print_table(rows, limit=20)
    print(textwrap.dedent(f"""
        Held-out accuracy: base {report['base_accuracy']:.0%}  ->  tuned {report['tuned_accuracy']:.0%}  \
({len(rows)} questions)
        Training took {report['train_seconds']:.0f} s. The run is in {run_dir}/ (adapter, config, metrics, loss.png);
        every answer is in {run_dir}/quickstart.json.
        Chat with it:  annotune chat {run_dir}
        One answer:    annotune chat {run_dir} --prompt "What does error E27 mean?"
    """).rstrip())
    return 0
