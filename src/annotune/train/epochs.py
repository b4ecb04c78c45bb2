"""What each epoch trains on: the user's chats, with the chats of a fact asked fewer ways repeated (``balanced``), a
share of their questions reworded (augment.py), their subjects' fact sheets (sheets.py), and that epoch's turn
of the replay pool (replay.py).

The replay pool is every everyday prompt with the base model's answer. An epoch takes ``--replay`` times as many
of them as it has user chats, the next epoch the next ones of the same seeded order, so a run of many epochs
keeps the base model's answers on the whole pool, not on the few a single draw would repeat every epoch. The cost
per epoch is the same. A run saved before the pool holds only its drawn replay chats; the count is then the whole
pool and every epoch trains on all of them, as it did.

Everything is fixed by (seed, epoch), so a resumed run and every DDP process see the same chats.
"""

from __future__ import annotations

import random
from collections import Counter

from annotune.conversation import Conversation
from annotune.dataset.split import trained_answers, typical_ways
from annotune.models.templates import Encoded, encode
from annotune.train.augment import epoch_conversations
from annotune.train.replay import is_replay, replay_count
from annotune.train.sheets import FactSheets, encode_sheet

SHEET_MARGIN = 16  # tokens: a sheet's sentences joined in another order may tokenize a few tokens longer


class Epochs:
    def __init__(self, convs: list[Conversation], encoded: list[Encoded], replay_share: float, seed: int,
                 question_noise: float, tokenizer, max_length: int, fact_balance: int = 1, fact_sheets: int = 0):
        self.own = balanced([i for i, c in enumerate(convs) if not is_replay(c)], convs, fact_balance)
        self.sheets = FactSheets([c for c in convs if not is_replay(c)], fact_sheets,
                                 lambda conv: len(encode(tokenizer, conv).input_ids) + SHEET_MARGIN <= max_length)
        self.pool = [i for i, c in enumerate(convs) if is_replay(c)]
        self.replay_count = replay_count(replay_share, len(self.own), len(self.pool))
        self.convs, self.encoded, self.seed = convs, encoded, seed
        self.question_noise, self.tokenizer, self.max_length = question_noise, tokenizer, max_length
        self._order = self.pool[:]
        random.Random(f"replay:{seed}").shuffle(self._order)

    @property
    def size(self) -> int:
        """Chats per epoch."""
        return len(self.own) + self.sheets.count() + self.replay_count

    def supervised_tokens(self, epoch: int) -> int:
        """Answer tokens the epoch trains on (rewording never changes an answer, so the chats as read tell)."""
        return (sum(self.encoded[i].supervised for i in self.own + self.replay_indices(epoch))
                + sum(e.supervised for e in self._sheets(epoch)))

    def replay_indices(self, epoch: int) -> list[int]:
        if self.replay_count >= len(self.pool):
            return self.pool
        start = epoch * self.replay_count
        return [self._order[(start + k) % len(self._order)] for k in range(self.replay_count)]

    def examples(self, epoch: int) -> list[Encoded]:
        """The epoch's encoded chats: the user's (some reworded), its fact sheets, then its replay chats."""
        own = [self.encoded[i] for i in self.own]
        if self.question_noise:
            originals = [self.convs[i] for i in self.own]
            reworded = epoch_conversations(originals, self.seed, epoch, self.question_noise)
            own = [self._encode(new, encoded) if new is not old else encoded
                   for new, old, encoded in zip(reworded, originals, own)]
        return own + self._sheets(epoch) + [self.encoded[i] for i in self.replay_indices(epoch)]

    def _sheets(self, epoch: int) -> list[Encoded]:
        """The epoch's fact sheets (sheets.py), encoded."""
        return [encode_sheet(self.tokenizer, conv) for conv in self.sheets.epoch(self.seed, epoch)]

    def _encode(self, conv: Conversation, original: Encoded) -> Encoded:
        """A reworded chat, or its original encoding if the rewording no longer fits --max-length."""
        encoded = encode(self.tokenizer, conv)
        return encoded if len(encoded.input_ids) <= self.max_length and encoded.supervised else original


def balanced(indices: list[int], convs: list[Conversation], limit: int) -> list[int]:
    """``indices`` with the chats of a fact asked fewer ways repeated, so that each fact (the answers a chat trains
    on) trains about as often per epoch as a typical one, at most ``limit`` times.

    Without it a fact asked one way is trained a quarter as often as one asked four ways, and a new wording of it
    gets the answer of a better-drilled fact. The target is the number of ways the median chat's fact is asked
    (so one canned answer given to many questions does not multiply every other chat), and a chat whose fact is
    asked k ways appears round(target / k) times. Data whose facts are all asked the same number of ways is
    unchanged."""
    keys = [trained_answers(convs[i]) for i in indices]
    groups = Counter(keys)
    target = min(limit, typical_ways([convs[i] for i in indices]))
    return [i for i, key in zip(indices, keys) for _ in range(max(1, round(target / groups[key])))]
