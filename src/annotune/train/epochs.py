"""What each epoch trains on: the user's chats, a share of their questions reworded (augment.py), and that epoch's
turn of the replay pool (replay.py).

The replay pool is every everyday prompt with the base model's answer. An epoch takes ``--replay`` times as many
of them as the user has chats, the next epoch the next ones of the same seeded order, so a run of many epochs
keeps the base model's answers on the whole pool, not on the few a single draw would repeat every epoch. The cost per epoch is the same. A run saved before the pool holds only its drawn replay chats; the count is
then the whole pool and every epoch trains on all of them, as it did.

Everything is fixed by (seed, epoch), so a resumed run and every DDP process see the same chats.
"""

from __future__ import annotations

import random

from annotune.conversation import Conversation
from annotune.models.templates import Encoded, encode
from annotune.train.augment import epoch_conversations
from annotune.train.replay import is_replay, replay_count


class Epochs:
    def __init__(self, convs: list[Conversation], encoded: list[Encoded], replay_share: float, seed: int,
                 question_noise: float, tokenizer, max_length: int):
        self.own = [i for i, c in enumerate(convs) if not is_replay(c)]
        self.pool = [i for i, c in enumerate(convs) if is_replay(c)]
        self.replay_count = replay_count(replay_share, len(self.own), len(self.pool))
        self.convs, self.encoded, self.seed = convs, encoded, seed
        self.question_noise, self.tokenizer, self.max_length = question_noise, tokenizer, max_length
        self._order = self.pool[:]
        random.Random(f"replay:{seed}").shuffle(self._order)

    @property
    def size(self) -> int:
        """Chats per epoch."""
        return len(self.own) + self.replay_count

    def supervised_tokens(self, epoch: int) -> int:
        """Answer tokens the epoch trains on (rewording never changes an answer, so the chats as read tell)."""
        return sum(self.encoded[i].supervised for i in self.own + self.replay_indices(epoch))

    def replay_indices(self, epoch: int) -> list[int]:
        if self.replay_count >= len(self.pool):
            return self.pool
        start = epoch * self.replay_count
        return [self._order[(start + k) % len(self._order)] for k in range(self.replay_count)]

    def examples(self, epoch: int) -> list[Encoded]:
        """The epoch's encoded chats: the user's (some reworded), then its replay chats."""
        own = [self.encoded[i] for i in self.own]
        if self.question_noise:
            originals = [self.convs[i] for i in self.own]
            reworded = epoch_conversations(originals, self.seed, epoch, self.question_noise)
            own = [self._encode(new, encoded) if new is not old else encoded
                   for new, old, encoded in zip(reworded, originals, own)]
        return own + [self.encoded[i] for i in self.replay_indices(epoch)]

    def _encode(self, conv: Conversation, original: Encoded) -> Encoded:
        """A reworded chat, or its original encoding if the rewording no longer fits --max-length."""
        encoded = encode(self.tokenizer, conv)
        return encoded if len(encoded.input_ids) <= self.max_length and encoded.supervised else original
