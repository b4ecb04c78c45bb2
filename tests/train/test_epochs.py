"""What each epoch trains on (train/epochs.py): reworded questions, the replay pool's rotation."""

import pytest
from test_augment import chat

from annotune.conversation import Conversation, Message
from annotune.models.templates import IGNORE, encode
from annotune.train.epochs import Epochs


def _replay(i: int) -> Conversation:
    return Conversation([Message("user", f"Everyday question number {i}, asked in full?"),
                         Message("assistant", f"Everyday answer {i}.")], {"id": f"r{i}", "source": "replay"})


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from annotune.models.loading import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(str(tiny)))


def _epochs(tokenizer, n_own: int, n_pool: int, share: float, noise: float = 0.0, max_length: int = 1024):
    convs = [chat(f"What is the peak frequency number {i} on the Bramble Line today?") for i in range(n_own)]
    convs += [_replay(i) for i in range(n_pool)]
    encoded = [encode(tokenizer, c) for c in convs]
    return Epochs(convs, encoded, share, 42, noise, tokenizer, max_length), encoded


def _answers(examples):
    return [[t for t in e.targets if t != IGNORE] for e in examples]


def test_reworded_questions_keep_every_answer_token_and_replay_chats_stay_as_they_are(tokenizer):
    epochs, encoded = _epochs(tokenizer, 12, 4, 1 / 3, noise=1.0)
    for epoch in (0, 1):
        examples = epochs.examples(epoch)
        assert all(new.input_ids != old.input_ids for new, old in zip(examples[:12], encoded[:12]))
        assert examples[12:] == encoded[12:]
        assert _answers(examples) == _answers(encoded)
    assert epochs.supervised_tokens(1) == sum(e.supervised for e in epochs.examples(1))
    assert epochs.examples(0)[0].input_ids != epochs.examples(1)[0].input_ids  # anew every epoch
    assert epochs.examples(1)[0].input_ids == epochs.examples(1)[0].input_ids  # and the same on a resume


def test_a_rewording_that_no_longer_fits_keeps_the_original_and_no_noise_changes_nothing(tokenizer):
    too_short, encoded = _epochs(tokenizer, 6, 0, 0, noise=1.0, max_length=8)
    assert all(new is old for new, old in zip(too_short.examples(0), encoded))
    plain, encoded = _epochs(tokenizer, 6, 2, 1 / 3)
    assert all(new is old for new, old in zip(plain.examples(3), encoded))


def test_each_epoch_takes_the_next_replay_chats_so_a_run_covers_the_pool(tokenizer):
    epochs, encoded = _epochs(tokenizer, 8, 10, 0.375)
    assert epochs.size == 11 and len(epochs.pool) == 10
    drawn = [epochs.replay_indices(e) for e in range(4)]
    assert all(len(d) == 3 and len(set(d)) == 3 for d in drawn)
    assert set(i for d in drawn for i in d) == set(range(8, 18))  # 4 epochs of 3 cover all 10
    assert set(drawn[0]).isdisjoint(drawn[1]) and set(drawn[1]).isdisjoint(drawn[2])
    assert [len(epochs.examples(e)) for e in range(3)] == [11, 11, 11]
    assert epochs.supervised_tokens(2) == sum(e.supervised for e in epochs.examples(2))
    assert epochs.examples(2)[8:] == [encoded[i] for i in drawn[2]]


def test_a_pool_no_larger_than_the_count_trains_on_all_of_it_every_epoch(tokenizer):
    # runs saved before the pool hold only their drawn replay chats: they resume as they trained
    epochs, encoded = _epochs(tokenizer, 8, 2, 0.25)
    assert epochs.size == 10
    assert epochs.examples(0) == epochs.examples(5) == encoded
