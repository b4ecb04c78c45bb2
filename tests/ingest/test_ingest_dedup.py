"""Exact and near-duplicate detection, its threshold, and saving and reloading its state."""

from __future__ import annotations

import random

import numpy as np

from annotune.ingest.dedup import Deduplicator, fingerprint

random.seed(3)
WORDS = [f"word{i}" for i in range(3000)]


def doc() -> list[str]:
    return [random.choice(WORDS) for _ in range(300)]


def edited(words: list[str], changes: int) -> str:
    copy = list(words)
    for index in random.sample(range(len(copy)), changes):
        copy[index] = f"other{index}"
    return " ".join(copy)


def jaccard(a: str, b: str) -> float:
    def grams(t):
        w = t.lower().split()
        return {tuple(w[i:i + 5]) for i in range(len(w) - 4)}
    return len(grams(a) & grams(b)) / len(grams(a) | grams(b))


def test_exact_duplicates_ignore_case_and_spacing():
    dedup = Deduplicator()
    text = " ".join(doc())
    assert dedup.check("a", *fingerprint(text)) is None
    found = dedup.check("b", *fingerprint("  " + text.upper().replace(" ", "   ")))
    assert (found.kind, found.kept, found.similarity) == ("exact", "a", 1.0)


def test_near_duplicates_found_and_distinct_documents_kept():
    dedup = Deduplicator(threshold=0.8)
    originals = [doc() for _ in range(50)]
    for i, words in enumerate(originals):
        assert dedup.check(f"o{i}", *fingerprint(" ".join(words))) is None
    near = edited(originals[7], 3)
    assert jaccard(near, " ".join(originals[7])) > 0.9
    found = dedup.check("n", *fingerprint(near))
    assert found.kind == "near" and found.kept == "o7" and 0.85 < found.similarity < 1
    far = edited(originals[8], 40)
    assert jaccard(far, " ".join(originals[8])) < 0.5
    assert dedup.check("f", *fingerprint(far)) is None


def test_threshold_is_configurable():
    words = doc()
    moderately = edited(words, 12)  # Jaccard around 0.7
    strict, loose = Deduplicator(threshold=0.9), Deduplicator(threshold=0.5)
    for dedup in (strict, loose):
        dedup.check("a", *fingerprint(" ".join(words)))
    assert strict.check("b", *fingerprint(moderately)) is None
    assert loose.check("b", *fingerprint(moderately)).kind == "near"


def test_signature_estimates_jaccard():
    words = doc()
    for changes in (3, 10, 30):
        other = edited(words, changes)
        estimate = np.mean(fingerprint(" ".join(words))[1] == fingerprint(other)[1])
        assert abs(estimate - jaccard(" ".join(words), other)) < 0.12


def test_save_and_load_keeps_only_wanted_documents(tmp_path):
    first, second = " ".join(doc()), " ".join(doc())
    dedup = Deduplicator()
    dedup.check("a", *fingerprint(first))
    dedup.check("b", *fingerprint(second))
    with (tmp_path / "sig.npz").open("wb") as fh:
        dedup.save(fh)
    reloaded = Deduplicator()
    assert reloaded.load(tmp_path / "sig.npz", keep={"a"}) == 1
    assert reloaded.check("x", *fingerprint(first)).kept == "a"
    assert reloaded.check("y", *fingerprint(second)) is None
