"""The five task types: what a record's payload holds, what an annotation's value holds, and the checks.

=========  =====================================================  ===========================================
type       record payload                                         annotation value
=========  =====================================================  ===========================================
write      ``context`` (a chunk), optional ``suggestion``          ``pairs``: [{question, answer}, ...] (>= 1)
correct    ``question``, ``answer`` (a draft), ``draft_by``,        ``verdict``: ok | edited | rejected, plus
           optional ``context`` and earlier ``messages``            ``question``/``answer`` (edited), ``reason``
rate       ``messages`` (the prompt), ``answer``, ``model``        ``score`` 1-5, optional ``comment``
compare    ``messages``, ``answers``: [{content, model}] x 2       ``choice``: 0 | 1 (index into answers) | tie
label      ``text``                                                ``label``: one of the project's labels
=========  =====================================================  ===========================================
"""

from __future__ import annotations

from typing import Any

from annotune.annotate.errors import Invalid

TASK_TYPES = ("write", "correct", "rate", "compare", "label")
VERDICTS = ("ok", "edited", "rejected")
MAX_TEXT = 100_000  # characters in one field of an annotation
MAX_PAIRS = 20  # question/answer pairs in one write annotation: every one is shown wherever it is reviewed


def _text(value: dict[str, Any], key: str, field: str, required: bool = True) -> str:
    raw = value.get(key, "")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise Invalid(field, f"must be text, got {type(raw).__name__}")
    text = raw.strip()
    if required and not text:
        raise Invalid(field, "is empty; write it or skip the task")
    if len(text) > MAX_TEXT:
        raise Invalid(field, f"is {len(text):,} characters long; the limit is {MAX_TEXT:,}")
    return text


def _check_write(value: dict[str, Any]) -> dict[str, Any]:
    pairs = value.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise Invalid("pairs", "write at least one question/answer pair")
    if len(pairs) > MAX_PAIRS:
        raise Invalid("pairs", f"has {len(pairs)} question/answer pairs; the limit is {MAX_PAIRS} per record "
                               "(split the rest over other records)")
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict):
            raise Invalid(f"pairs[{i}]", "must be an object with question and answer")
        question = _text(pair, "question", f"pairs[{i}].question", required=False)
        answer = _text(pair, "answer", f"pairs[{i}].answer", required=False)
        if not question and not answer:
            continue  # an unused row of the form
        if not question or not answer:
            missing = "question" if not question else "answer"
            raise Invalid(f"pairs[{i}].{missing}", "is empty; fill in both question and answer, or clear the pair")
        checked.append({"question": question, "answer": answer})
    if not checked:
        raise Invalid("pairs", "write at least one question/answer pair")
    return {"pairs": checked}


def _check_correct(value: dict[str, Any]) -> dict[str, Any]:
    verdict = value.get("verdict")
    if verdict not in VERDICTS:
        raise Invalid("verdict", f"must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    reason = _text(value, "reason", "reason", required=False)
    if verdict == "rejected":
        return {"verdict": verdict, "reason": reason}
    return {"verdict": verdict, "question": _text(value, "question", "question"),
            "answer": _text(value, "answer", "answer"), "reason": reason}


def _check_rate(value: dict[str, Any]) -> dict[str, Any]:
    score = value.get("score")
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise Invalid("score", f"must be a whole number from 1 to 5, got {score!r}")
    return {"score": score, "comment": _text(value, "comment", "comment", required=False)}


def _check_compare(value: dict[str, Any]) -> dict[str, Any]:
    choice = value.get("choice")
    if isinstance(choice, str) and choice in ("0", "1"):
        choice = int(choice)
    if choice not in (0, 1, "tie") or isinstance(choice, bool):
        raise Invalid("choice", f"must be 0 (first answer), 1 (second answer) or 'tie', got {choice!r}")
    return {"choice": choice, "comment": _text(value, "comment", "comment", required=False)}


def _check_label(value: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    label = value.get("label")
    if label not in labels:
        raise Invalid("label", f"must be one of the project's labels ({', '.join(labels)}), got {label!r}")
    return {"label": label}


def check_value(task_type: str, value: Any, labels: list[str]) -> dict[str, Any]:
    """The annotation ``value`` normalised (text stripped), or :class:`Invalid` naming the field."""
    if not isinstance(value, dict):
        raise Invalid("value", f"must be a JSON object, got {type(value).__name__}")
    if task_type == "write":
        return _check_write(value)
    if task_type == "correct":
        return _check_correct(value)
    if task_type == "rate":
        return _check_rate(value)
    if task_type == "compare":
        return _check_compare(value)
    if task_type == "label":
        return _check_label(value, labels)
    raise Invalid("task_type", f"unknown task type {task_type!r}")


def suggestion_changed(task_type: str, payload: dict[str, Any], value: dict[str, Any]) -> bool | None:
    """Whether the annotator changed the draft they were given before submitting; None without a draft.

    write: the model's ``suggestion`` pairs against the submitted pairs; correct: anything but verdict ``ok``.
    """
    if task_type == "write":
        suggestion = payload.get("suggestion")
        if not isinstance(suggestion, dict) or not suggestion.get("pairs"):
            return None
        given = [(p.get("question", "").strip(), p.get("answer", "").strip()) for p in suggestion["pairs"]]
        return given != [(p["question"], p["answer"]) for p in value["pairs"]]
    if task_type == "correct":
        return value["verdict"] != "ok"
    return None


def check_project_settings(task_type: str, labels: list[str], overlap: int) -> None:
    if task_type not in TASK_TYPES:
        raise Invalid("task_type", f"must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    if task_type == "label" and len(labels) < 2:
        raise Invalid("labels", "a label project needs at least two labels, e.g. --labels yes,no")
    if task_type != "label" and labels:
        raise Invalid("labels", f"only label projects have labels; leave them out for a {task_type} project")
    if len(set(labels)) != len(labels):
        raise Invalid("labels", "labels must be distinct")
    if not 1 <= overlap <= 20:
        raise Invalid("overlap", f"must be between 1 and 20 annotations per record, got {overlap}")


def agreement_kind(task_type: str) -> str:
    """How agreement is measured: nominal categories, ordinal scores, or similarity of written text."""
    return {"rate": "ordinal", "label": "nominal", "compare": "nominal", "correct": "nominal"}.get(task_type, "text")


def agreement_value(task_type: str, value: dict[str, Any]) -> Any:
    """The part of an annotation that agreement compares."""
    if task_type == "write":
        return "\n".join(f"{p['question']}\n{p['answer']}" for p in value["pairs"])
    return {"rate": value.get("score"), "label": value.get("label"), "compare": value.get("choice"),
            "correct": value.get("verdict")}[task_type]
