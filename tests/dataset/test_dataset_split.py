"""train_val_split: sizes, determinism and refusals."""

from __future__ import annotations

import pytest

from annotune.conversation import Conversation, Message
from annotune.dataset import train_val_split
from annotune.config import TrainConfig
from annotune.dataset.split import AUTO_MAX, AUTO_SHARE, FILL_FROM, auto_val_size, covered_split
from annotune.errors import AnnotuneError, DataError


def make(n: int) -> list[Conversation]:
    return [Conversation([Message("user", f"q{i}"), Message("assistant", f"a{i}")], {"id": i}) for i in range(n)]


def ids(conversations: list[Conversation]) -> list[int]:
    return [c.meta["id"] for c in conversations]


def test_fraction_and_count_sizes():
    data = make(20)
    train, val = train_val_split(data, 0.25, seed=1)
    assert (len(train), len(val)) == (15, 5)
    train, val = train_val_split(data, 3, seed=1)
    assert (len(train), len(val)) == (17, 3)


def test_parts_are_disjoint_complete_and_keep_input_order():
    train, val = train_val_split(make(30), 0.2, seed=7)
    assert sorted(ids(train) + ids(val)) == list(range(30))
    assert ids(train) == sorted(ids(train)) and ids(val) == sorted(ids(val))


def test_same_seed_same_split_other_seed_other_split():
    data = make(50)
    first = ids(train_val_split(data, 0.2, seed=3)[1])
    again = ids(train_val_split(list(data), 0.2, seed=3)[1])
    other = ids(train_val_split(data, 0.2, seed=4)[1])
    assert first == again
    assert first != other


def test_zero_means_no_validation_set():
    data = make(4)
    for zero in (0, 0.0):
        train, val = train_val_split(data, zero, seed=0)
        assert (ids(train), val) == ([0, 1, 2, 3], [])


def test_small_fraction_still_gives_one_validation_example():
    train, val = train_val_split(make(5), 0.01, seed=0)
    assert (len(train), len(val)) == (4, 1)


@pytest.mark.parametrize("val_size", [5, 9, 0.99])
def test_no_training_data_left_is_refused(val_size):
    with pytest.raises(DataError, match="leaving none to train on"):
        train_val_split(make(5), val_size, seed=0)


@pytest.mark.parametrize("val_size", [-1, 1.0, 1.5, True, "0.1"])
def test_invalid_val_size_is_refused(val_size):
    with pytest.raises(AnnotuneError):
        train_val_split(make(10), val_size, seed=0)


def paraphrased(facts: int, phrasings: int) -> list[Conversation]:
    """``phrasings`` questions per fact, all with the fact's one answer."""
    return [Conversation([Message("user", f"question {p} about fact {f}"), Message("assistant", f"Fact {f} is {f}.")],
                         {"id": f * phrasings + p}) for f in range(facts) for p in range(phrasings)]


def answers(conversations: list[Conversation]) -> set[str]:
    return {m.content for c in conversations for m in c.messages if m.role == "assistant"}


@pytest.mark.parametrize("phrasings", [2, 3])
def test_covered_split_keeps_every_fact_in_training(phrasings):
    data = paraphrased(30, phrasings)
    for seed in range(20):
        train, val = covered_split(data, 0.5, seed)
        assert answers(train) == answers(data)  # no fact left out, however many phrasings go to validation
        assert sorted(ids(train) + ids(val)) == list(range(len(data)))
    # With 2 phrasings at most one per fact can go: 30 of the 60 asked for.
    train, val = covered_split(paraphrased(30, 2), 0.9, 0)
    assert len(val) == 30 and len(answers(val)) == 30


def test_covered_split_takes_the_requested_share_when_it_can(caplog):
    train, val = covered_split(paraphrased(40, 3), 0.1, 5)
    assert len(val) == 12 and len(train) == 108
    assert covered_split(paraphrased(40, 3), 0.1, 5) == (train, val)  # deterministic
    assert not caplog.records  # nothing to warn about


def test_covered_split_of_small_data_without_repeats_has_no_validation(caplog):
    data = make(50)
    train, val = covered_split(data, 0.1, 0)
    assert (len(train), len(val)) == (50, 0)
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "No validation set" in record.message
    assert "asked for 5 conversations" in record.message and "--val-data" in record.message


def test_covered_split_says_when_it_gives_fewer_than_asked(caplog):
    train, val = covered_split(paraphrased(30, 2), 40, 0)
    assert len(val) == 30
    (record,) = caplog.records
    assert "30 conversations, not the 40" in record.message


def test_covered_split_of_large_data_fills_validation_at_random():
    data = make(FILL_FROM)
    train, val = covered_split(data, 0.1, 0)
    assert len(val) == FILL_FROM // 10 and len(train) == FILL_FROM - len(val)


def test_covered_split_multi_turn_needs_every_answer_taught():
    """A two-turn chat may leave only when both of its answers are given elsewhere in training."""
    turns = lambda a, b, i: Conversation(  # noqa: E731
        [Message("user", "q"), Message("assistant", a), Message("user", "q2"), Message("assistant", b)], {"id": i})
    data = [turns("A", "B", 0), turns("B", "C", 1), turns("C", "A", 2), turns("A", "D", 3)]
    for seed in range(10):
        train, val = covered_split(data, 3, seed)
        assert answers(train) == {"A", "B", "C", "D"}
        assert 3 not in ids(val)  # its answer D is given nowhere else


def test_auto_val_size_holds_nothing_out_below_fill_from():
    assert auto_val_size(1) == auto_val_size(FILL_FROM - 1) == 0
    assert auto_val_size(FILL_FROM) == auto_val_size(int(AUTO_MAX / AUTO_SHARE)) == AUTO_SHARE
    assert auto_val_size(30_000) == AUTO_MAX and isinstance(AUTO_MAX, int)  # a count: 1,000 of 30,000, not 3,000
    repeated = [Conversation([Message("user", f"q{i}"), Message("assistant", f"a{i // 2}")], {"id": i})
                for i in range(2 * FILL_FROM)]
    assert len(covered_split(repeated, auto_val_size(len(repeated)), seed=0)[1]) == round(AUTO_SHARE * 2 * FILL_FROM)


@pytest.mark.parametrize("given, read", [("auto", "auto"), ("0", 0), ("3", 3), ("0.1", 0.1), ("1e3", 1000),
                                         (0.25, 0.25), (2, 2)])
def test_val_size_option_reads_a_share_a_count_or_auto(given, read):
    value = TrainConfig(data="x", val_size=given).val_size
    assert value == read and type(value) is type(read)


@pytest.mark.parametrize("given", ["-1", "x", "inf", "nan", True, -0.5])
def test_val_size_option_refuses_what_is_no_size(given):
    with pytest.raises(ValueError, match="a share"):
        TrainConfig(data="x", val_size=given)
