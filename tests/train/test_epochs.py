"""What each epoch trains on (train/epochs.py): reworded questions, facts balanced, the replay pool's rotation."""

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


def _fact(question: str, answer: str) -> Conversation:
    return Conversation([Message("user", question), Message("assistant", answer)], {"id": question})


def test_a_fact_asked_fewer_ways_is_repeated_so_each_fact_trains_about_as_often(tokenizer):
    convs = [_fact(f"How long does the Sprout plan keep old versions, asked way {k}?", "Nine days.") for k in range(4)]
    convs += [_fact("How much storage comes with Sprout?", "Six GB."),
              _fact("What storage quota does a Sprout account get?", " six  gb. ")]  # the same answer
    convs += [_fact("Which of the plans is the one that every new account gets by default?", "Sprout.")]
    convs += [_replay(i) for i in range(6)]
    encoded = [encode(tokenizer, c) for c in convs]

    def epochs(balance: int, noise: float = 0.0) -> Epochs:
        return Epochs(convs, encoded, 0.25, 42, noise, tokenizer, 1024, balance)

    assert epochs(4).own == [0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 6]
    assert epochs(4).size == 12 + 3  # replay is a share of the balanced epoch
    assert epochs(2).own == [0, 1, 2, 3, 4, 5, 6, 6]
    assert epochs(1).own == [0, 1, 2, 3, 4, 5, 6]
    copies = [e.input_ids for e in epochs(4, noise=1.0).examples(0)[8:12]]
    assert len({tuple(ids) for ids in copies}) > 1  # question noise rewords the copies apart
    assert _answers(epochs(4, noise=1.0).examples(0)[:12]) == _answers([encoded[i] for i in epochs(4).own])
    same = [_fact(f"Question {k} about fact {f}, asked in full?", f"Answer {f}.") for f in range(3) for k in range(2)]
    assert Epochs(same, [encode(tokenizer, c) for c in same], 0, 42, 0, tokenizer, 1024, 4).own == list(range(6))
    # one canned answer to many questions among facts asked once: the median chat's fact is asked once, no repeats
    canned = [_fact(f"Can you help with thing {k}?", "Please contact support.") for k in range(5)]
    canned += [_fact(f"What is fact {f}?", f"Answer {f}.") for f in range(6)]
    assert Epochs(canned, [encode(tokenizer, c) for c in canned], 0, 42, 0, tokenizer, 1024, 4).own == list(range(11))
