"""Deterministic train/validation split."""

from __future__ import annotations

import random
from collections.abc import Sequence

from annotune.conversation import Conversation
from annotune.errors import AnnotuneError, DataError


def _validation_count(total: int, val_size: float | int) -> int:
    """How many examples go to validation; ``val_size`` is a fraction in (0, 1) or a count."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise AnnotuneError(f"val_size must be a number, got {val_size!r}; use a fraction like 0.1 or a count like 50")
    if val_size < 0:
        raise AnnotuneError(f"val_size must not be negative, got {val_size}; use 0 for no validation set")
    if isinstance(val_size, int) or val_size == 0:
        return int(val_size)
    if val_size >= 1:
        raise AnnotuneError(f"val_size {val_size} is not a fraction in (0, 1); pass a whole number for a count")
    # Asking for a fraction means asking for a validation set: never round it down to nothing.
    return max(1, round(total * val_size))


def train_val_split(
    conversations: Sequence[Conversation],
    val_size: float | int,
    seed: int,
) -> tuple[list[Conversation], list[Conversation]]:
    """``(train, val)``, the same for the same input and seed; both keep the input order.

    The validation examples are drawn at random with ``random.Random(seed)``, which does not depend on
    Python's hash seed, so a rerun (or another machine) gets the same split. Keeping the input order inside
    each part makes the split easy to inspect; shuffling for training is the trainer's job.
    """
    total = len(conversations)
    count = _validation_count(total, val_size)
    if count == 0:
        return list(conversations), []
    if count >= total:
        raise DataError(
            f"val_size={val_size} puts {count} of {total} conversations in validation, leaving none to train on; "
            "lower --val-size or add data"
        )
    chosen = set(random.Random(seed).sample(range(total), count))
    train = [c for i, c in enumerate(conversations) if i not in chosen]
    val = [c for i, c in enumerate(conversations) if i in chosen]
    return train, val
