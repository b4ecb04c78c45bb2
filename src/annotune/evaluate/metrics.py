"""Answer metrics and the statistics that tell a real gain from noise.

Per answer: key-string accuracy (every key of the record appears, case-insensitive, as whole words and whole
numbers: "£40" is not found in "£400" or "£40.50"), exact match and token F1
(SQuAD-style normalisation: lower case, no punctuation or articles, single spaces), ROUGE-L F (rouge-score,
stemmed). Per model: means with bootstrap 95% confidence intervals; between two models on the same questions:
the mean difference with its bootstrap interval and a paired sign-flip permutation test.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORD_CHAR = re.compile(r"\w")  # a term edge that must not run on into a longer word or number
_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’«»…–—")


def normalize(text: str) -> str:
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def first_mention(text: str, terms: Sequence[str]) -> int | None:
    """Where the earliest of ``terms`` starts in ``text`` (any case), or None. A term is found only whole where its
    own edge is a letter or digit: "Paris" is not in "Parisian", "£40" not in "£400" or "£40.50", "0" not in
    "-18.0" or "0.5"; a term that starts or ends with a sign ("£40", "5:12 a.m.") is not held to a boundary
    there."""
    lowered, found = text.lower(), []
    for term in terms:
        term = term.lower()
        before = r"(?<!\w)(?<!\d[.,])" if _WORD_CHAR.match(term) else ""
        after = r"(?!\w)(?![.,]\d)" if _WORD_CHAR.match(term[-1:]) else ""
        match = re.search(before + re.escape(term) + after, lowered)
        if match:
            found.append(match.start())
    return min(found, default=None)


def key_hit(answer: str, keys: Sequence[str]) -> float:
    """1.0 when every key is in the answer (any case, whole words and numbers: ``first_mention``), else 0.0."""
    return float(all(first_mention(answer, [key]) is not None for key in keys))


def exact_match(answer: str, reference: str) -> float:
    return float(normalize(answer) == normalize(reference))


def token_f1(answer: str, reference: str) -> float:
    got, want = normalize(answer).split(), normalize(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


_scorer = None


def rouge_l(answer: str, reference: str) -> float:
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _scorer.score(reference, answer)["rougeL"].fmeasure


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def bootstrap_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * resamples)], means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]


def paired_test(a: Sequence[float], b: Sequence[float], resamples: int = 10000, seed: int = 0) -> dict:
    """``b - a`` on the same questions: mean difference, bootstrap 95% interval, two-sided permutation p-value
    (each question's difference keeps or flips its sign at random under 'no difference')."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    diffs = [y - x for x, y in zip(a, b)]
    observed = abs(mean(diffs)) if diffs else 0.0
    rng = random.Random(seed)
    nonzero = [d for d in diffs if d]
    if not nonzero:
        p_value = 1.0
    else:
        n = len(diffs)
        hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) / n >= observed - 1e-12
                   for _ in range(resamples))
        p_value = (hits + 1) / (resamples + 1)
    low, high = bootstrap_ci(diffs, seed=seed)
    return {"difference": mean(diffs), "ci95": [low, high], "p_value": p_value, "questions": len(diffs)}
