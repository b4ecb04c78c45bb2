"""train_val_split: sizes, determinism and refusals."""

from __future__ import annotations

import pytest

from annotune.conversation import Conversation, Message
from annotune.dataset import train_val_split
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
