"""Question noise (train/augment.py): what is reworded, what never is, and that training sees it."""

import random

from annotune.conversation import Conversation, Message
from annotune.train.augment import epoch_conversations, is_name, reword

QUESTION = "How often do Bramble Line trains run at rush hour on the 3rd of May?"


def test_reword_keeps_names_and_numbers_in_order_and_changes_the_rest():
    rng = random.Random(0)
    variants = [reword(QUESTION, rng) for _ in range(200)]
    for text in variants:
        words = text.split()
        assert [w for w in words if w in ("Bramble", "Line", "3rd")] == ["Bramble", "Line", "3rd"]
        assert words.index("Line") == words.index("Bramble") + 1  # a name is never split by a swap
        assert set(words) <= set(QUESTION.split())
    assert all(v != QUESTION for v in variants)  # every rewording swaps at least one pair
    assert any(len(v.split()) < len(QUESTION.split()) for v in variants)  # and some delete words
    assert len(set(variants)) > 50


def test_identifiers_are_names_that_noise_never_deletes():
    question = "What is the default value of the setting sync_workers in /etc/kestrune/main.conf for iOS?"
    kept = ["sync_workers", "/etc/kestrune/main.conf", "iOS?"]
    assert [w for i, w in enumerate(question.split()) if is_name(w, i)] == kept
    rng = random.Random(1)
    for _ in range(300):
        assert [w for w in reword(question, rng).split() if w in kept] == kept
    # plain words stay ordinary wherever they are; a capital makes a name past the first word only
    assert not any(is_name(w, i) for i, w in enumerate("What is the default value of it, really?".split()))
    assert [is_name("Kestrune", 0), is_name("Kestrune", 3), is_name("TLS", 0)] == [False, True, True]


def test_reword_leaves_short_turns_and_is_fixed_by_its_generator():
    assert reword("And its price?", random.Random(0)) == "And its price?"
    assert reword(QUESTION, random.Random(5)) == reword(QUESTION, random.Random(5))


def chat(question: str) -> Conversation:
    return Conversation([Message("system", "Answer as the Bramble Line helpdesk, in one sentence."),
                         Message("user", question), Message("assistant", "Every 4 minutes at rush hour.")],
                        {"id": question})


def test_epoch_conversations_reword_user_turns_only_and_depend_on_seed_and_epoch():
    convs = [chat(f"What is the peak frequency number {i} on the Bramble Line today?") for i in range(40)]
    assert epoch_conversations(convs, 42, 0, 0.0) is convs
    def questions(epoch):
        return [c.messages[1].content for c in epoch_conversations(convs, 42, epoch, 0.5)]

    first = epoch_conversations(convs, 42, 0, 0.5)
    assert [c.messages[1].content for c in first] == questions(0)
    assert questions(0) != questions(1)
    changed = [new is not old for new, old in zip(first, convs)]
    assert 8 < sum(changed) < 32  # about half
    for new, old in zip(first, convs):
        assert [m.content for m in new.messages[::2]] == [m.content for m in old.messages[::2]]
        assert new.meta == old.meta
        if new is not old:
            assert new.messages[1].content != old.messages[1].content
