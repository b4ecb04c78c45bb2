"""`annotune evaluate`: answer held-out questions with each model (runs and baselines) through the generation
engine, score the answers, and write results.json, answers.jsonl, probe.jsonl and report.html.

Models are loaded one after another, each on its own engine. The general-knowledge
probe (probe.jsonl beside this file, everyday questions with accepted answers and, where a question has obvious
wrong ones of the same kind, rejected answers) runs on every model, so the report can say how many of the
baseline's right answers a tuned run kept.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotune.conversation import Conversation, Message
from annotune.evaluate import metrics
from annotune.evaluate.data import Question, read_questions
from annotune.generation.config import OFFLINE_BATCH, GenerationConfig

PROBE = Path(__file__).with_name("probe.jsonl")
ACCURACY_METRICS = ("key_accuracy", "exact_match", "token_f1", "rouge_l")  # reported with bootstrap intervals


@dataclass
class ModelResult:
    name: str
    ref: str
    role: str  # "baseline" | "run"
    answers: list[dict] = field(default_factory=list)  # per question: text, finish, scores
    probe: list[bool] = field(default_factory=list)
    probe_texts: list[str] = field(default_factory=list)
    probe_routes: list[str | None] = field(default_factory=list)
    loss: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def load_probe() -> list[dict]:
    from annotune.dataset.files import read_jsonl

    return read_jsonl(PROBE)


def probe_correct(answer: str, accept: list[str], reject: list[str] = ()) -> bool:
    """Right when the answer names an accepted answer (a whole word or phrase, any case) and no rejected one comes
    before it: "Jupiter, though Saturn is bigger" is right, "Proxima Centauri, close to the Sun" is not."""
    first, wrong = metrics.first_mention(answer, accept), metrics.first_mention(answer, reject)
    return first is not None and (wrong is None or wrong >= first)


def evaluate(runs: list[str], data: str, baselines: list[str], out: Path, cfg: GenerationConfig,
             data_format: str | None = None, probe: bool = True, judge=None, progress: bool = True,
             routing: bool = True) -> dict:
    """Evaluate ``runs`` (and ``baselines``) on ``data``; writes the outputs into ``out`` and returns results.
    With ``routing``, a run with a router answers what is unlike its training questions with its base model, as
    `serve` does (generation/routing.py)."""
    from tqdm.auto import tqdm

    from annotune.evaluate.report import write_report
    from annotune.generation.loading import describe, load_engine, split_name, unique_names

    questions = read_questions(data, data_format)  # bad data is refused before any model loads
    refs = [*baselines, *runs]
    specs = unique_names([describe(ref) for ref in refs])  # every reference resolves before any weights load
    results = {spec.name: ModelResult(spec.name, split_name(ref)[1], "baseline" if ref in baselines else "run")
               for spec, ref in zip(specs, refs)}
    probe_items = load_probe() if probe else []
    started = time.perf_counter()
    # One model at a time, each on its own (a LoRA run merged into its base): faster than batching the
    # models together through unmerged adapters, and only one model's weights in memory.
    prompts = [q.messages for q in questions] + [[{"role": "user", "content": p["question"]}] for p in probe_items]
    with tqdm(total=len(refs) * len(prompts), desc="answering", unit="answer", file=sys.stderr,
              disable=not progress) as bar:
        for spec in specs:
            with load_engine(spec, routing=routing, max_batch=OFFLINE_BATCH) as engine:
                _answer(engine, results[spec.name], questions, probe_items, prompts, cfg, bar)
    seconds = time.perf_counter() - started
    for result in results.values():
        result.summary = _summary(result)
    judged = judge.judge_all(questions, results) if judge else None
    report = _compare(results, probe_items)
    report.update(data=str(data), questions=len(questions), seconds=round(seconds, 1),
                  generation=cfg.model_dump(), judge=judged)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "results.json", report)
    _write_answers(out / "answers.jsonl", questions, results)
    if probe_items:
        _write_probe(out / "probe.jsonl", probe_items, results)
    else:  # a probe file left by an earlier evaluation into this folder would not match these results
        (out / "probe.jsonl").unlink(missing_ok=True)
    run_names = [n for n, r in results.items() if r.role == "run"]
    write_report(out / "report.html", report, questions, results, runs=run_names,
                 run_dirs={n: results[n].ref for n in run_names})
    return report


def _answer(engine, result: ModelResult, questions: list[Question], probe_items: list[dict], prompts, cfg,
            bar) -> None:
    """The model's answers to the questions and the probe, and its loss on the reference answers."""
    name = next(iter(engine.models))
    answers = engine.generate(name, prompts, cfg, on_result=lambda i, r: bar.update())
    result.answers = [_scores(q, r) for q, r in zip(questions, answers)]
    result.probe_texts = [r.text.strip() for r in answers[len(questions):]]
    result.probe_routes = [r.route for r in answers[len(questions):]]
    result.probe = [probe_correct(text, p["accept"], p.get("reject", ())) for p, text in zip(probe_items,
                                                                                           result.probe_texts)]
    convs = [Conversation([Message(m["role"], m["content"]) for m in q.messages]
                          + [Message("assistant", q.reference)]) for q in questions]
    scored = engine.score(name, convs)
    for answer, (nll, count) in zip(result.answers, scored):
        answer["reference_loss"] = nll / count if count else None
    total = sum(c for _, c in scored)
    result.loss = sum(n for n, _ in scored) / total if total else None


def _scores(question: Question, result) -> dict:
    text = result.text.strip()
    scores = {"exact_match": metrics.exact_match(text, question.reference),
              "token_f1": metrics.token_f1(text, question.reference),
              "rouge_l": metrics.rouge_l(text, question.reference)}
    if question.keys:
        scores["key_accuracy"] = metrics.key_hit(text, question.keys)
    routed = {"route": result.route} if result.route else {}
    return {"text": text, "finish_reason": result.finish_reason, "tokens": result.completion_tokens, **scores,
            **routed}


def _summary(result: ModelResult) -> dict:
    summary: dict[str, Any] = {}
    for metric in ACCURACY_METRICS:
        values = [a[metric] for a in result.answers if metric in a]
        if values:
            low, high = metrics.bootstrap_ci(values)
            summary[metric] = {"mean": metrics.mean(values), "ci95": [low, high], "n": len(values)}
    summary["answer_words"] = metrics.mean([len(a["text"].split()) for a in result.answers])
    summary["stopped_on_own"] = metrics.mean([float(a["finish_reason"] == "stop") for a in result.answers])
    summary["reference_loss"] = result.loss
    summary["reference_perplexity"] = math.exp(result.loss) if result.loss is not None else None
    if result.probe:
        summary["general_probe"] = {"correct": sum(result.probe), "of": len(result.probe)}
    if any("route" in a for a in result.answers) or any(result.probe_routes):
        summary["routed_to_base"] = {"questions": sum(a.get("route") == "base" for a in result.answers),
                                     "probe": result.probe_routes.count("base"), "probe_of": len(result.probe)}
    return summary


def _compare(results: dict[str, ModelResult], probe_items: list[dict]) -> dict:
    baselines = [r for r in results.values() if r.role == "baseline"]
    models = {}
    for result in results.values():
        entry: dict[str, Any] = {"ref": result.ref, "role": result.role, **result.summary}
        if result.role == "run" and baselines:
            base = baselines[0]
            entry["against"] = base.name
            entry["paired"] = {m: metrics.paired_test([a[m] for a in base.answers], [a[m] for a in result.answers])
                               for m in ACCURACY_METRICS if m in result.summary}
            if result.probe:
                right = [i for i, ok in enumerate(base.probe) if ok]
                kept = sum(result.probe[i] for i in right)
                entry["retention"] = {"kept": kept, "of": len(right),
                                      "share": kept / len(right) if right else None,
                                      "lost": [probe_items[i]["id"] for i in right if not result.probe[i]]}
        models[result.name] = entry
    return {"models": models}


def _write_json(path: Path, value: Any) -> None:
    from annotune.dataset.files import write_atomically

    write_atomically(path, [json.dumps(value, indent=2, ensure_ascii=False) + "\n"])


def _write_answers(path: Path, questions: list[Question], results: dict[str, ModelResult]) -> None:
    from annotune.dataset.files import write_atomically

    def rows():
        for i, q in enumerate(questions):
            row = {"id": q.id, "messages": q.messages, "question": q.text, "reference": q.reference, "keys": q.keys,
                   "answers": {name: r.answers[i] for name, r in results.items()}}
            yield json.dumps(row, ensure_ascii=False) + "\n"

    write_atomically(path, rows())


def _write_probe(path: Path, probe_items: list[dict], results: dict[str, ModelResult]) -> None:
    """Every model's answer to each probe question and whether it counted as right."""
    from annotune.dataset.files import write_atomically

    def answer(r: ModelResult, i: int) -> dict:
        routed = {"route": r.probe_routes[i]} if r.probe_routes[i] else {}
        return {"text": r.probe_texts[i], "correct": r.probe[i], **routed}

    rows = ({**item, "answers": {name: answer(r, i) for name, r in results.items()}}
            for i, item in enumerate(probe_items))
    write_atomically(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
