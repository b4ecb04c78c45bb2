"""Question noise: every epoch, the user turns of the training chats are reworded a little, at random.

A few hundred chats that ask each fact in two or three fixed wordings teach a small model to answer from the
wording's surface (the words "How ... trains" mean the frequency), so a new wording of a known fact gets the
wrong fact's answer. Randomly deleting and swapping a few words of each question, anew every epoch (the easy data
augmentation of Wei and Zou, 2019, without its thesaurus), makes every word of a question count towards what it
asks, not one cue. Words that name something (:func:`is_name`: capitalised past the first word, holding a digit,
or written like an identifier) are never deleted, so the question still names its thing; answers and system
prompts are never changed.

The rewording of epoch ``e`` is fixed by (seed, e, conversation index), so a resumed run and every DDP process
see the same text.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from annotune.conversation import Conversation

DELETE = 0.1  # chance that a deletable word is dropped
SWAP = 0.1  # swaps of two neighbouring ordinary words, per word (at least one where there is such a pair)
MIN_WORDS = 4  # shorter questions ("and its price?") stay as they are


PUNCTUATION = "?,.:;!'\"()`\u2018\u2019\u201c\u201d"


def bare(word: str) -> str:
    """A question's word without the punctuation around it and a possessive's 's ("Fernhollow's": Fernhollow)."""
    core = word.strip(PUNCTUATION)
    return core[:-2] if core.endswith(("'s", "\u2019s")) else core


def is_name(word: str, position: int) -> bool:
    """Whether the ``position``-th word of a question names something: it holds a digit, is written like an
    identifier (an underscore, a capital past its first letter, a path, or a dotted name with two letters or more
    after a dot: sync_workers, KSTR_DEDUP, iPhone, /var/lib/app, config.yaml; not e.g. or a.m.), or is capitalised
    past the question's first word."""
    core = word.strip(PUNCTUATION)
    return (any(c.isdigit() for c in core) or "_" in core or any(c.isupper() for c in core[1:])
            or core.startswith("/") or re.search(r"\w\.[^\W\d_]{2,}", core) is not None
            or (position > 0 and core[:1].isupper()))


def reword(text: str, rng: random.Random) -> str:
    """``text`` with some words deleted and some neighbours swapped; names and numbers stay, in their places
    relative to each other. Unchanged if too short."""
    words = text.split()
    if len(words) < MIN_WORDS:
        return text
    marked = [(w, is_name(w, i)) for i, w in enumerate(words)]
    left = [(w, k) for w, k in marked if k or rng.random() >= DELETE]
    if len(left) < MIN_WORDS - 1:  # too much gone: delete nothing
        left = marked
    free = [i for i in range(len(left) - 1) if not left[i][1] and not left[i + 1][1]]
    for i in rng.sample(free, min(len(free), max(1, round(SWAP * len(left))))):  # distinct: none undoes another
        left[i], left[i + 1] = left[i + 1], left[i]
    return " ".join(w for w, _ in left)


def epoch_conversations(convs: list[Conversation], seed: int, epoch: int, share: float) -> list[Conversation]:
    """The epoch's chats: a ``share`` of the user turns reworded, the rest (and every other turn) as given.
    A chat left as it was is the same object."""
    if share <= 0:
        return convs
    out = []
    for index, conv in enumerate(convs):
        rng = random.Random(f"{seed}:{epoch}:{index}")
        messages = [replace(m, content=reword(m.content, rng)) if m.role == "user" and rng.random() < share else m
                    for m in conv.messages]
        changed = any(new.content != old.content for new, old in zip(messages, conv.messages))
        out.append(Conversation(messages, conv.meta) if changed else conv)
    return out
