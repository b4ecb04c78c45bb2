"""Inter-annotator agreement: Cohen's and Fleiss' kappa, Krippendorff's alpha and text overlap.

Annotations come as ``units``: a mapping of record id -> {annotator id -> value}. A value of
``None`` counts as missing, and a unit left with fewer than two values is not pairable and is
ignored by every measure here. Scores that are undefined (no pairable data, or no variation for
Krippendorff's alpha) are returned as ``None`` so that results stay JSON-ready.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import combinations
from typing import Any, Literal

Units = Mapping[Hashable, Mapping[Hashable, Any]]
PairScore = Callable[[Any, Any], float]

_TOKEN = re.compile(r"[^\W_]+")


def pairable_units(units: Units) -> list[dict[Hashable, Any]]:
    """The units with at least two non-missing values, as {annotator: value} dicts, in input order."""
    kept = []
    for values in units.values():
        present = {annotator: value for annotator, value in values.items() if value is not None}
        if len(present) >= 2:
            kept.append(present)
    return kept


def _chance_corrected(observed: float, expected: float, single_category: bool) -> float:
    """(observed - expected) / (1 - expected), with the single-category case settled by rule."""
    if single_category or expected >= 1.0:
        return 1.0 if observed >= 1.0 - 1e-12 else 0.0
    return (observed - expected) / (1.0 - expected)


def cohen_kappa(pairs: Sequence[tuple[Any, Any]]) -> float | None:
    """Cohen's kappa for two raters on nominal categories, from (rater 1, rater 2) value pairs.

    Returns ``None`` for fewer than two pairs. When the expected agreement is 1 (both raters
    used one and the same category throughout) kappa is 0/0; this function then returns 1.0 if
    the observed agreement is 1 and 0.0 otherwise, so that a run of unanimous labels reads as
    agreement rather than as missing.
    """
    if len(pairs) < 2:
        return None
    n = len(pairs)
    observed = sum(1 for first, second in pairs if first == second) / n
    first_counts = Counter(first for first, _ in pairs)
    second_counts = Counter(second for _, second in pairs)
    expected = sum(first_counts[c] * second_counts[c] for c in first_counts) / (n * n)
    single = len(set(first_counts) | set(second_counts)) == 1
    return _chance_corrected(observed, expected, single)


def fleiss_kappa(units: Units, categories: Sequence[Hashable] | None = None) -> float | None:
    """Fleiss' kappa for nominal values, allowing a different number of raters per unit.

    Per-unit agreement ``P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))`` is averaged over the
    pairable units, and chance agreement ``P_e = sum_j p_j**2`` uses the category proportions
    pooled over all their values. With equal rater counts this is Fleiss (1971) exactly.

    ``categories``, when given, lists the allowed values; any other value raises ``ValueError``.
    Returns ``None`` without pairable units; when only one category occurs (``P_e == 1``) it
    returns 1.0 if every unit is unanimous and 0.0 otherwise, as :func:`cohen_kappa` does.
    """
    kept = pairable_units(units)
    if not kept:
        return None
    allowed = set(categories) if categories is not None else None
    totals: Counter = Counter()
    per_unit = []
    for values in kept:
        counts = Counter(values.values())
        if allowed is not None and not set(counts) <= allowed:
            raise ValueError(f"values {sorted(map(repr, set(counts) - allowed))} are not in categories")
        n_i = len(values)
        per_unit.append(sum(c * (c - 1) for c in counts.values()) / (n_i * (n_i - 1)))
        totals.update(counts)
    observed = sum(per_unit) / len(per_unit)
    n = sum(totals.values())
    expected = sum((count / n) ** 2 for count in totals.values())
    return _chance_corrected(observed, expected, len(totals) == 1)


def _coincidences(kept: list[list[Any]]) -> dict[tuple[Any, Any], float]:
    """Krippendorff's coincidence matrix, sparse: (c, k) -> o_ck over the pairable units."""
    matrix: dict[tuple[Any, Any], float] = defaultdict(float)
    for values in kept:
        counts = Counter(values)
        weight = 1.0 / (len(values) - 1)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                matrix[c, k] += (n_c * n_k - (n_c if c == k else 0)) * weight
    return matrix


def _positions(marginals: Mapping[Any, float], level: str) -> dict[Any, float]:
    """Where each value sits on the line whose squared distances give the metric.

    Interval: the value itself. Ordinal: its mid-rank ``sum_{g<c} n_g + n_c / 2`` among the
    sorted observed values, since Krippendorff's ordinal metric
    ``(sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2`` equals the squared difference of mid-ranks.
    """
    if level == "interval":
        return {value: float(value) for value in marginals}
    positions, below = {}, 0.0
    for value in sorted(marginals):
        positions[value] = below + marginals[value] / 2.0
        below += marginals[value]
    return positions


def krippendorff_alpha(units: Units, level: Literal["nominal", "ordinal", "interval"] = "nominal") -> float | None:
    """Krippendorff's alpha ``1 - D_o / D_e`` from the coincidence matrix of the pairable units.

    Missing values and varying numbers of annotators per unit are handled by the coincidence
    matrix. ``level`` picks the difference metric: nominal (0 if equal, else 1), ordinal
    (Krippendorff's rank-based metric over the observed values, which must be sortable) or
    interval (squared difference of the values as floats).

    Returns ``None`` when there are no pairable values, and also when only one distinct value
    is observed: then the expected disagreement ``D_e`` is 0 and alpha is undefined.
    """
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"level must be 'nominal', 'ordinal' or 'interval', not {level!r}")
    kept = [list(values.values()) for values in pairable_units(units)]
    if level == "interval":
        kept = [[float(value) for value in values] for values in kept]
    if not kept:
        return None
    matrix = _coincidences(kept)
    marginals: dict[Any, float] = defaultdict(float)
    for (c, _), o_ck in matrix.items():
        marginals[c] += o_ck
    if len(marginals) < 2:
        return None
    n = sum(marginals.values())
    if level == "nominal":
        observed = sum(o_ck for (c, k), o_ck in matrix.items() if c != k)
        expected = (n * n - sum(n_c * n_c for n_c in marginals.values())) / (n - 1)
    else:
        pos = _positions(marginals, level)
        observed = sum(o_ck * (pos[c] - pos[k]) ** 2 for (c, k), o_ck in matrix.items())
        mean = sum(n_c * pos[c] for c, n_c in marginals.items()) / n
        # sum_c sum_k n_c n_k (x_c - x_k)**2 == 2 n sum_c n_c (x_c - mean)**2
        expected = 2.0 * n * sum(n_c * (pos[c] - mean) ** 2 for c, n_c in marginals.items()) / (n - 1)
    return 1.0 - observed / expected


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def text_similarity(a: str, b: str) -> float:
    """Token-level F1 of two texts, as in SQuAD: lower-cased, split on non-alphanumerics.

    Tokens are matched as multisets. Two texts without tokens score 1.0; one empty, 0.0.
    The score is symmetric and lies in [0, 1].
    """
    tokens_a, tokens_b = _tokens(a), _tokens(b)
    if not tokens_a or not tokens_b:
        return 1.0 if not tokens_a and not tokens_b else 0.0
    common = sum((Counter(tokens_a) & Counter(tokens_b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(tokens_a), common / len(tokens_b)
    return 2 * precision * recall / (precision + recall)


def _mean_pairwise(units: Units, pair_score: PairScore) -> float | None:
    """Mean of ``pair_score`` over every unordered pair of annotators within each unit."""
    scores = [pair_score(a, b) for values in pairable_units(units) for a, b in combinations(values.values(), 2)]
    return sum(scores) / len(scores) if scores else None


def _same(a: Any, b: Any) -> float:
    return float(a == b)


def percent_agreement(units: Units) -> float | None:
    """Share of annotator pairs (within units, pooled over all units) that gave the same value."""
    return _mean_pairwise(units, _same)


def mean_pairwise_text_similarity(units: Units) -> float | None:
    """:func:`text_similarity` averaged over every annotator pair within every unit; ``None`` without pairs."""
    return _mean_pairwise(units, text_similarity)


def _annotator_pairs(units: Units) -> dict[Hashable, list[tuple[Any, Any]]]:
    """For every annotator, (own value, other annotator's value) on each shared record.

    Annotators whose values are never shared still appear, with no pairs.
    """
    pairs: dict[Hashable, list[tuple[Any, Any]]] = {}
    for values in units.values():
        for annotator, value in values.items():
            if value is not None:
                pairs.setdefault(annotator, [])
    for values in pairable_units(units):
        for annotator, own in values.items():
            pairs[annotator].extend((own, other) for name, other in values.items() if name != annotator)
    return pairs


def per_annotator(units: Units, pair_score: PairScore) -> dict[Hashable, dict[str, Any]]:
    """Each annotator's mean ``pair_score(own, other)`` against every other annotator on shared records.

    Use ``lambda a, b: float(a == b)`` for observed agreement on nominal values, or
    :func:`text_similarity` for free text. Returns ``{annotator: {"agreement": float | None,
    "pairs": int}}``; ``agreement`` is ``None`` for an annotator who shares no record.
    """
    result = {}
    for annotator, pairs in _annotator_pairs(units).items():
        scores = [pair_score(own, other) for own, other in pairs]
        result[annotator] = {"agreement": sum(scores) / len(scores) if scores else None, "pairs": len(scores)}
    return result


def per_annotator_kappa(units: Units) -> dict[Hashable, dict[str, Any]]:
    """Cohen's kappa of each annotator against all others, pooling (own, other) pairs on shared records.

    Returns ``{annotator: {"kappa": float | None, "pairs": int}}``.
    """
    return {
        annotator: {"kappa": cohen_kappa(pairs), "pairs": len(pairs)}
        for annotator, pairs in _annotator_pairs(units).items()
    }


def summarize(units: Units, kind: Literal["nominal", "ordinal", "text"]) -> dict[str, Any]:
    """A JSON-ready agreement report for one kind of annotation.

    - ``nominal``: fleiss_kappa, krippendorff_alpha (nominal), percent_agreement, units,
      per_annotator ``{annotator: {"agreement", "kappa", "pairs"}}``.
    - ``ordinal`` (e.g. 1-5 ratings): krippendorff_alpha (ordinal), fleiss_kappa (treating
      ratings as categories), percent_agreement, units, per_annotator as for nominal.
    - ``text``: text_similarity (mean pairwise token F1), units,
      per_annotator ``{annotator: {"agreement", "pairs"}}``.

    ``units`` is the number of pairable units; per_annotator keys are the annotator ids as given.
    """
    count = len(pairable_units(units))
    if kind == "text":
        return {
            "text_similarity": mean_pairwise_text_similarity(units),
            "units": count,
            "per_annotator": per_annotator(units, text_similarity),
        }
    if kind not in ("nominal", "ordinal"):
        raise ValueError(f"kind must be 'nominal', 'ordinal' or 'text', not {kind!r}")
    kappas = per_annotator_kappa(units)
    annotators = {
        annotator: {"agreement": entry["agreement"], "kappa": kappas[annotator]["kappa"], "pairs": entry["pairs"]}
        for annotator, entry in per_annotator(units, _same).items()
    }
    return {
        "krippendorff_alpha": krippendorff_alpha(units, kind),
        "fleiss_kappa": fleiss_kappa(units),
        "percent_agreement": percent_agreement(units),
        "units": count,
        "per_annotator": annotators,
    }
