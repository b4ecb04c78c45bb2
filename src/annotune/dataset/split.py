"""Deterministic train/validation split."""

from __future__ import annotations

import logging
import random
import statistics
from collections import Counter
from collections.abc import Sequence

from annotune.conversation import Conversation
from annotune.errors import AnnotuneError, DataError

log = logging.getLogger(__name__)

FILL_FROM = 1000  # conversations: from here on a random validation row may take a fact out of training
AUTO_SHARE = 0.1  # --val-size auto's share, from FILL_FROM conversations on
# and at most this many: a 30,000-chat set's 10% (3,000) takes minutes to validate each epoch on a CPU, and 1,000
# chats' tens of thousands of answer tokens already score an epoch to a few tenths of a point (length.noise_margin)
AUTO_MAX = 1000


def auto_val_size(total: int) -> float | int:
    """``--val-size auto``: no validation set below ``FILL_FROM`` conversations, ``AUTO_SHARE`` from there on.

    In a small set every conversation held out is a phrasing of a fact the model no longer trains on, and the
    validated epoch it bought was the last one trained in every run measured. Trained on all of it, the worst of
    the domain sets of benchmarks/domains/ rose from 82% to 85% held-out and their mean stayed level
    (docs/benchmarks.md). From ``FILL_FROM`` conversations on one conversation is a small share of the data, and
    validation keeps its use: a loss curve to watch, the best epoch, early stopping. Above ``AUTO_MAX`` / ``AUTO_SHARE``
    conversations it is ``AUTO_MAX`` of them, and the rest train.
    """
    if total < FILL_FROM:
        return 0
    return AUTO_MAX if total * AUTO_SHARE > AUTO_MAX else AUTO_SHARE


def _validation_count(total: int, val_size: float | int) -> int:
    """How many examples go to validation; ``val_size`` is a fraction in (0, 1) or a count. A count that would
    leave nothing to train on is refused."""
    count = _requested(total, val_size)
    if count and count >= total:
        raise DataError(
            f"val_size={val_size} puts {count} of {total} conversations in validation, leaving none to train on; "
            "lower --val-size or add data"
        )
    return count


def _requested(total: int, val_size: float | int) -> int:
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
    chosen = set(random.Random(seed).sample(range(total), count))
    return _parts(conversations, chosen)


def covered_split(
    conversations: Sequence[Conversation],
    val_size: float | int,
    seed: int,
) -> tuple[list[Conversation], list[Conversation]]:
    """``(train, val)`` where every validation answer is still taught by a training conversation.

    Instruction data for a domain often asks the same fact several ways with the same answer. A plain random split
    of a small set of such data takes facts out of training altogether (every phrasing of a fact can land in
    validation) and measures nothing the model could have learnt. Here a conversation goes to validation only when
    each answer it trains on is also given in a conversation that stays in training: validation then asks a known
    fact in a new way, which is what held-out paraphrases test. Candidates are taken in a seeded random order, at
    most ``val_size`` of them. Small data with too few repeated answers gets a smaller validation set (none, if no
    answer repeats) rather than lose facts; from ``FILL_FROM`` conversations on, one conversation is a small share
    of the data and the rest of the validation set is drawn at random as usual.
    """
    total = len(conversations)
    count = _validation_count(total, val_size)
    counts: dict[str, int] = {}
    answers = [trained_answers(c) for c in conversations]
    for found in answers:
        for answer in found:
            counts[answer] = counts.get(answer, 0) + 1
    order = list(range(total))
    random.Random(seed).shuffle(order)
    chosen: set[int] = set()
    for i in order:
        if len(chosen) >= count:
            break
        if answers[i] and all(counts[a] >= 2 for a in answers[i]):
            chosen.add(i)
            for answer in answers[i]:
                counts[answer] -= 1
    if len(chosen) < count and total >= FILL_FROM:
        rest = [i for i in range(total) if i not in chosen]
        chosen.update(random.Random(seed).sample(rest, count - len(chosen)))
    if len(chosen) < count:
        _warn_short(len(chosen), count, val_size)
    return _parts(conversations, chosen)


def _warn_short(got: int, asked: int, val_size: float | int) -> None:
    why = ("only a conversation whose answers another conversation also teaches can be held out without taking "
           "a fact out of training")
    if got == 0:
        log.warning("No validation set (val_size %s asked for %d conversations): %s, and no answer here is given "
                    "twice. Training runs its planned epochs with no early stop or best-epoch choice; add "
                    "phrasings that share an answer, or pass --val-data FILE.", val_size, asked, why)
    else:
        log.warning("Validation set: %d conversations, not the %d that val_size %s asks for: %s.",
                    got, asked, val_size, why)


def trained_answers(conversation: Conversation) -> frozenset[str]:
    """The trained assistant answers of a conversation, compared without case and surrounding space: the facts it
    teaches."""
    return frozenset(" ".join(m.content.split()).lower() for i, m in enumerate(conversation.messages)
                     if conversation.trains_on(i))


def typical_ways(conversations: Sequence[Conversation]) -> int:
    """How many ways the median conversation's fact (its trained answers) is asked in ``conversations``: what a
    typical fact gets, counted per conversation so that one canned answer given to many questions does not raise it
    (1 for no conversations)."""
    return typical_count([trained_answers(c) for c in conversations])


def typical_count(facts: Sequence[frozenset[str]]) -> int:
    """How many times the median entry of ``facts`` (one per conversation: its trained answers) occurs in it, the
    count :func:`typical_ways` gives (1 for none)."""
    ways = Counter(facts)
    return statistics.median_low(ways[f] for f in facts) if facts else 1


def _parts(conversations: Sequence[Conversation], chosen: set[int]) -> tuple[list[Conversation], list[Conversation]]:
    train = [c for i, c in enumerate(conversations) if i not in chosen]
    val = [c for i, c in enumerate(conversations) if i in chosen]
    return train, val
