"""Exact and near-duplicate detection.

:func:`fingerprint` is pure (text in, exact hash and MinHash signature out), so it can run in worker
processes. :class:`Deduplicator` is the one stateful step: it keeps the first document of each cluster,
compares later ones through MinHash LSH (datasketch), and can be saved and reloaded so that re-runs compare
new documents against everything kept before.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

_WORD = re.compile(r"\w+")
SCHEME = "affine32"
SEED = 1


@lru_cache(maxsize=4)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    # Fixed seed: signatures saved by one run must stay comparable with the next one's.
    rng = np.random.RandomState(SEED)
    a = rng.randint(1, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)  # odd: a bijection
    b = rng.randint(0, 2**32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: spreads every input bit over the output (uint32 arithmetic wraps)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(words: list[str], k: int) -> np.ndarray:
    """32-bit hashes of the ``k``-word shingles, computed for all shingles at once."""
    word = _fmix32(np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint32, count=len(words)))
    k = min(k, max(1, len(words)))
    count = max(1, len(words) - k + 1)
    h = word[:count].copy()
    for j in range(1, k):
        h = (h * np.uint32(0x9E3779B1)) ^ word[j:j + count]
    return _fmix32(h)


def fingerprint(text: str, num_perm: int = 128, shingle_words: int = 5) -> tuple[str, np.ndarray]:
    """Exact key (hash of the lower-cased words) and MinHash signature of the word shingles of ``text``.

    The signature is computed with numpy over all shingles at once (one affine permutation of a 32-bit hash
    per row), about fifty times faster than hashing shingle by shingle; datasketch's LSH indexes it.
    """
    words = _WORD.findall(text.lower())
    exact = hashlib.blake2b(" ".join(words).encode(), digest_size=16).hexdigest()
    if not words:
        return exact, np.full(num_perm, 2**32 - 1, dtype=np.uint32)
    a, b = _permutations(num_perm)
    hashes = shingle_hashes(words, shingle_words)
    return exact, (hashes[:, None] * a[None, :] + b[None, :]).min(axis=0)


@dataclass
class Duplicate:
    """A dropped document: which kept document it duplicates, how (exact or near), and how similar."""

    kind: str
    kept: str
    similarity: float


@dataclass
class Deduplicator:
    threshold: float = 0.8
    num_perm: int = 128
    exact: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    signatures: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        from datasketch import MinHashLSH

        # Candidates come from a looser LSH (more bands of fewer rows) than the threshold: every candidate is
        # verified on its signature anyway, and at the threshold itself a tuned LSH finds only about half the
        # pairs (0.8 with 128 permutations: 9 bands of 13 rows find 45% of pairs at 0.81, 16 bands of 8 find 96%).
        self.lsh = MinHashLSH(threshold=max(0.3, self.threshold - 0.15), num_perm=self.num_perm)
        if self.signatures is None:
            self.signatures = np.zeros((1024, self.num_perm), dtype=np.uint32)

    def _lean(self, hashvalues: np.ndarray):
        from datasketch import LeanMinHash

        return LeanMinHash(seed=SEED, hashvalues=hashvalues, scheme=SCHEME)

    def check(self, key: str, exact: str, hashvalues: np.ndarray) -> Duplicate | None:
        """The duplicate found for this document, or ``None`` after registering it as kept."""
        if exact in self.exact:
            return Duplicate("exact", self.exact[exact], 1.0)
        lean = self._lean(hashvalues)
        best, best_key = 0.0, None
        for candidate in self.lsh.query(lean):
            similarity = float(np.mean(self.signatures[self.rows[candidate]] == hashvalues))
            if similarity > best:
                best, best_key = similarity, candidate
        if best_key is not None and best >= self.threshold:
            return Duplicate("near", best_key, round(best, 3))
        self._keep(key, exact, hashvalues, lean)
        return None

    def _keep(self, key: str, exact: str, hashvalues: np.ndarray, lean=None) -> None:
        if len(self.keys) == len(self.signatures):
            self.signatures = np.concatenate([self.signatures, np.zeros_like(self.signatures)])
        self.rows[key] = len(self.keys)
        self.signatures[len(self.keys)] = hashvalues
        self.keys.append(key)
        self.exact[exact] = key
        self.lsh.insert(key, lean if lean is not None else self._lean(hashvalues), check_duplication=False)

    def save(self, handle) -> None:
        """Write the kept documents' keys, exact hashes and signatures to an open binary file."""
        by_key = {v: k for k, v in self.exact.items()}
        # Keys and hashes as one newline-joined byte string each: fixed-width unicode arrays take 4 bytes
        # per character of the longest key for every key.
        np.savez(handle, keys=np.frombuffer("\n".join(self.keys).encode(), dtype=np.uint8),
                 exact=np.frombuffer("\n".join(by_key[k] for k in self.keys).encode(), dtype=np.uint8),
                 signatures=self.signatures[:len(self.keys)])

    def load(self, path: Path, keep: set[str]) -> int:
        """Re-register the saved documents whose keys are in ``keep`` (files unchanged since); how many."""
        with np.load(path) as data:
            if data["signatures"].shape[1:] != (self.num_perm,):
                return 0  # num_perm changed: old signatures cannot be compared; the caller re-reads all
            keys, hashes = (data[name].tobytes().decode().split("\n") for name in ("keys", "exact"))
            for key, exact, hashvalues in zip(keys, hashes, data["signatures"]):
                if key in keep:
                    self._keep(key, exact, hashvalues)
        return len(self.keys)
