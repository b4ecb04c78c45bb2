"""Agreement measures against published worked examples and independent brute-force computations."""

from __future__ import annotations

import json
import random
from itertools import permutations

import pytest

from annotune.annotate.agreement import (
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    mean_pairwise_text_similarity,
    pairable_units,
    per_annotator,
    per_annotator_kappa,
    percent_agreement,
    summarize,
    text_similarity,
)

# Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters each, counts per category 1..5.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff, "Computing Krippendorff's alpha-reliability" (2011): 4 observers x 12 units,
# None = missing. Published: nominal 0.743, ordinal 0.815, interval 0.849.
RELIABILITY_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def by_unit(table: dict[str, list]) -> dict[int, dict[str, object]]:
    """Observer-major rows -> units as record id -> {annotator: value}."""
    length = len(next(iter(table.values())))
    return {u: {name: row[u] for name, row in table.items()} for u in range(length)}


def fleiss_units() -> dict[int, dict[str, int]]:
    units = {}
    for subject, counts in enumerate(FLEISS_TABLE):
        values = [category + 1 for category, count in enumerate(counts) for _ in range(count)]
        units[subject] = {f"r{rater}": value for rater, value in enumerate(values)}
    return units


def brute_force_alpha(units, level: str) -> float:
    """alpha = 1 - D_o / D_e from explicit value pairs: within units vs across all pairable values."""
    kept = [list(v.values()) for v in pairable_units(units)]
    pooled = [value for values in kept for value in values]
    n = len(pooled)
    counts = {value: pooled.count(value) for value in set(pooled)}
    ordered = sorted(counts)

    def delta(c, k) -> float:
        if level == "nominal":
            return float(c != k)
        if level == "interval":
            return float(c - k) ** 2
        low, high = sorted((c, k))
        between = sum(counts[g] for g in ordered if low <= g <= high)
        return (between - (counts[c] + counts[k]) / 2) ** 2

    d_o = sum(sum(delta(a, b) for a, b in permutations(values, 2)) / (len(values) - 1) for values in kept) / n
    d_e = sum(delta(a, b) for a, b in permutations(pooled, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


def random_units(seed: int, n_units: int = 25, levels: int = 5) -> dict[int, dict[str, int | None]]:
    rng = random.Random(seed)
    units = {}
    for u in range(n_units):
        truth = rng.randint(1, levels)
        units[u] = {
            f"a{i}": (None if rng.random() < 0.3 else min(levels, max(1, truth + rng.choice([-1, 0, 0, 1]))))
            for i in range(rng.randint(1, 5))
        }
    return units


# --- Cohen's kappa -------------------------------------------------------------------------


def test_cohen_kappa_hand_computed_2x2():
    # yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, kappa = 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_perfect_and_systematic_disagreement():
    assert cohen_kappa([("a", "a"), ("b", "b"), ("c", "c")]) == pytest.approx(1.0)
    assert cohen_kappa([("a", "b"), ("b", "a")] * 5) == pytest.approx(-1.0)
    assert cohen_kappa([("a", "b"), ("b", "c"), ("c", "a")]) < 0


def test_cohen_kappa_degenerate_cases():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a")]) is None
    assert cohen_kappa([("a", "a")] * 4) == 1.0  # expected agreement 1: unanimous reads as 1.0


# --- Fleiss' kappa -------------------------------------------------------------------------


def test_fleiss_kappa_published_example():
    units = fleiss_units()
    # Published: P-bar = 0.378, P_e = 0.213, kappa = 0.210.
    p_bar = sum(sum(c * (c - 1) for c in row) / (14 * 13) for row in FLEISS_TABLE) / 10
    p_e = sum((sum(row[j] for row in FLEISS_TABLE) / 140) ** 2 for j in range(5))
    assert p_bar == pytest.approx(0.378, abs=5e-4)
    assert p_e == pytest.approx(0.213, abs=5e-4)
    assert fleiss_kappa(units) == pytest.approx((p_bar - p_e) / (1 - p_e))
    assert fleiss_kappa(units) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(units, categories=[1, 2, 3, 4, 5, 6]) == pytest.approx(fleiss_kappa(units))


def test_fleiss_kappa_varying_rater_counts_by_hand():
    # P_i = 1, 1/3, 1/2 -> P-bar = 11/18; pooled a = 4, b = 5 of 9 -> P_e = 41/81; kappa = 17/80.
    units = {
        1: {"x": "a", "y": "a"},
        2: {"x": "a", "y": "b", "z": "b"},
        3: {"x": "a", "y": "b", "z": "b", "w": "b"},
        4: {"x": "a"},  # not pairable: ignored
        5: {"x": None, "y": "b"},  # one value after dropping the missing one: ignored
    }
    assert fleiss_kappa(units) == pytest.approx(17 / 80)


def test_fleiss_kappa_extremes_and_degenerate():
    assert fleiss_kappa({u: {"x": c, "y": c, "z": c} for u, c in enumerate("abcab")}) == pytest.approx(1.0)
    assert fleiss_kappa({u: {"x": "a", "y": "b"} for u in range(6)}) == pytest.approx(-1.0)
    assert fleiss_kappa({}) is None
    assert fleiss_kappa({1: {"x": "a"}, 2: {"y": "b"}}) is None
    assert fleiss_kappa({u: {"x": "a", "y": "a"} for u in range(3)}) == 1.0
    with pytest.raises(ValueError):
        fleiss_kappa({1: {"x": "a", "y": "z"}}, categories=["a", "b"])


# --- Krippendorff's alpha ------------------------------------------------------------------


@pytest.mark.parametrize("level, published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_published_reliability_data(level, published):
    units = by_unit(RELIABILITY_DATA)
    alpha = krippendorff_alpha(units, level)
    assert alpha == pytest.approx(published, abs=5e-4)
    assert alpha == pytest.approx(brute_force_alpha(units, level))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_matches_brute_force_on_random_data(seed, level):
    units = random_units(seed)
    assert krippendorff_alpha(units, level) == pytest.approx(brute_force_alpha(units, level))


def test_krippendorff_alpha_ordinal_depends_only_on_order():
    units = by_unit(RELIABILITY_DATA)
    squashed = {u: {a: (None if v is None else v**3 + 10) for a, v in vals.items()} for u, vals in units.items()}
    assert krippendorff_alpha(squashed, "ordinal") == pytest.approx(krippendorff_alpha(units, "ordinal"))
    assert krippendorff_alpha(squashed, "interval") != pytest.approx(krippendorff_alpha(units, "interval"))


def test_krippendorff_alpha_extremes_and_degenerate():
    perfect = {u: {"x": v, "y": v, "z": v} for u, v in enumerate([1, 2, 3, 4, 5])}
    for level in ("nominal", "ordinal", "interval"):
        assert krippendorff_alpha(perfect, level) == pytest.approx(1.0)
        assert krippendorff_alpha({}, level) is None
        assert krippendorff_alpha({1: {"x": 1}, 2: {"x": 2, "y": None}}, level) is None
        assert krippendorff_alpha({u: {"x": 3, "y": 3} for u in range(4)}, level) is None  # D_e == 0
    # Two values swapped across units: D_o = 1, D_e = 4/7 for nominal -> alpha = -3/4.
    swapped = {u: {"x": 1, "y": 5} for u in range(4)}
    assert krippendorff_alpha(swapped, "nominal") == pytest.approx(-0.75)
    assert krippendorff_alpha(swapped, "interval") < 0
    with pytest.raises(ValueError):
        krippendorff_alpha(perfect, "ratio")


# --- text ----------------------------------------------------------------------------------


def test_text_similarity_basics():
    assert text_similarity("The cat sat.", "the CAT sat") == 1.0
    assert text_similarity("", "") == 1.0
    assert text_similarity("...", " ") == 1.0
    assert text_similarity("cat", "") == 0.0
    assert text_similarity("cat", "dog") == 0.0
    # "the cat sat" vs "the cat": precision 1, recall 2/3 -> F1 0.8, either way round.
    assert text_similarity("the cat sat", "the cat") == pytest.approx(0.8)
    assert text_similarity("the cat", "the cat sat") == pytest.approx(0.8)
    # multiset overlap: "a a b" vs "a b" share 2 tokens -> F1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8
    assert text_similarity("a a b", "a b") == pytest.approx(0.8)
    assert text_similarity("snake_case-word", "snake case word") == 1.0


def test_mean_pairwise_text_similarity():
    units = {
        1: {"x": "the cat sat", "y": "the cat", "z": "the cat sat"},  # 0.8, 1.0, 0.8
        2: {"x": "dog", "y": "cat"},  # 0.0
        3: {"x": "lonely"},  # not pairable
    }
    assert mean_pairwise_text_similarity(units) == pytest.approx((0.8 + 1.0 + 0.8 + 0.0) / 4)
    assert mean_pairwise_text_similarity({1: {"x": "only"}}) is None


# --- per annotator -------------------------------------------------------------------------


def noisy_panel() -> dict[int, dict[str, str]]:
    """Three careful annotators who follow the truth and one who answers at random."""
    rng = random.Random(7)
    units = {}
    for u in range(60):
        truth = rng.choice("abc")
        units[u] = {
            "ana": truth,
            "ben": truth if rng.random() > 0.1 else rng.choice("abc"),
            "cy": truth,
            "noisy": rng.choice("abc"),
        }
    return units


def test_per_annotator_noisy_annotator_scores_lowest():
    units = noisy_panel()
    scores = per_annotator(units, lambda a, b: float(a == b))
    kappas = per_annotator_kappa(units)
    assert set(scores) == {"ana", "ben", "cy", "noisy"}
    assert all(entry["pairs"] == 60 * 3 for entry in scores.values())
    for careful in ("ana", "ben", "cy"):
        assert scores["noisy"]["agreement"] < scores[careful]["agreement"] - 0.3
        assert kappas["noisy"]["kappa"] < kappas[careful]["kappa"] - 0.3
    assert kappas["ana"]["pairs"] == 180


def test_per_annotator_hand_counts_and_unshared_annotator():
    units = {
        1: {"x": "a", "y": "a", "z": "b"},
        2: {"x": "a", "y": "b"},
        3: {"solo": "a"},
    }
    scores = per_annotator(units, lambda a, b: float(a == b))
    assert scores["x"] == {"agreement": pytest.approx(1 / 3), "pairs": 3}
    assert scores["y"] == {"agreement": pytest.approx(1 / 3), "pairs": 3}
    assert scores["z"] == {"agreement": 0.0, "pairs": 2}
    assert scores["solo"] == {"agreement": None, "pairs": 0}
    assert per_annotator_kappa(units)["solo"] == {"kappa": None, "pairs": 0}
    text = per_annotator({1: {"x": "the cat sat", "y": "the cat"}}, text_similarity)
    assert text["x"]["agreement"] == pytest.approx(0.8)


# --- summary -------------------------------------------------------------------------------


def test_summarize_nominal_and_ordinal():
    units = by_unit(RELIABILITY_DATA)
    nominal = summarize(units, "nominal")
    assert set(nominal) == {"fleiss_kappa", "krippendorff_alpha", "percent_agreement", "units", "per_annotator"}
    assert nominal["units"] == 11
    assert nominal["krippendorff_alpha"] == pytest.approx(0.743, abs=5e-4)
    assert nominal["fleiss_kappa"] == pytest.approx(fleiss_kappa(units))
    assert nominal["percent_agreement"] == pytest.approx(percent_agreement(units))
    assert set(nominal["per_annotator"]) == {"A", "B", "C", "D"}
    assert set(nominal["per_annotator"]["A"]) == {"agreement", "kappa", "pairs"}
    ordinal = summarize(units, "ordinal")
    assert ordinal["krippendorff_alpha"] == pytest.approx(0.815, abs=5e-4)
    json.dumps(nominal), json.dumps(ordinal)
    with pytest.raises(ValueError):
        summarize(units, "ratio")


def test_percent_agreement_pools_pairs():
    units = {1: {"x": "a", "y": "a", "z": "b"}, 2: {"x": "a", "y": "a"}}  # 1 of 3 + 1 of 1
    assert percent_agreement(units) == pytest.approx(2 / 4)
    assert percent_agreement({1: {"x": "a"}}) is None


def test_summarize_text():
    units = {1: {"ana": "the cat sat", "ben": "the cat"}, 2: {"ana": "a dog", "ben": "a dog"}}
    report = summarize(units, "text")
    assert report == {
        "text_similarity": pytest.approx(0.9),
        "units": 2,
        "per_annotator": {
            "ana": {"agreement": pytest.approx(0.9), "pairs": 2},
            "ben": {"agreement": pytest.approx(0.9), "pairs": 2},
        },
    }
    json.dumps(report)
