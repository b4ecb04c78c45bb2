"""Model-made rewordings of training questions (train/paraphrase.py): which ones may train on an answer, the
chats they become, the cache, and a run that trains on them."""

import json

from conftest import write_chats

from annotune.config import TrainConfig
from annotune.conversation import Conversation, Message
from annotune.train import paraphrase, sft

TURNS = [("What is the monthly fee for the Lantern Saver?", "The Lantern Saver costs £0.90 per month."),
         ("What interest rate does the Lantern Saver have?", "The Lantern Saver has an interest rate of 3.17%."),
         ("What is the monthly fee for the Harbour Account?", "The Harbour Account costs £2.85 per month."),
         ("How much does plan 2 cost?", "Plan 2 costs £5.")]
FEE_Q, FEE_A = TURNS[0]


def test_a_rewording_that_keeps_the_names_and_the_nearest_question_is_kept():
    assert paraphrase.keep("How much is the monthly charge for the Lantern Saver?", FEE_Q, FEE_A, TURNS)
    assert paraphrase.keep("What does plan 2 cost each month?", *TURNS[3], TURNS)


def test_a_rewording_nearer_another_fact_of_the_same_thing_is_dropped():
    # "rate" is the other fact's word: trained on the fee answer, it would teach the wrong attribute
    assert not paraphrase.keep("What is the annual rate of the Lantern Saver?", FEE_Q, FEE_A, TURNS)


def test_lost_names_copies_statements_and_stubs_are_dropped():
    assert not paraphrase.keep("What is the monthly fee for the Saver?", FEE_Q, FEE_A, TURNS)  # a name lost
    assert not paraphrase.keep("How much does plan 3 cost?", *TURNS[3], TURNS)  # another number
    assert not paraphrase.keep("what is the monthly fee for the Lantern Saver", FEE_Q, FEE_A, TURNS)  # a copy
    assert not paraphrase.keep("The Lantern Saver costs £1 a month.", FEE_Q, FEE_A, TURNS)  # not a question
    assert not paraphrase.keep("Lantern Saver fee?", FEE_Q, FEE_A, TURNS)  # too short
    assert not paraphrase.keep("Is the Lantern Saver good?", FEE_Q, FEE_A, TURNS)  # no word in common with any


def _chat(*turns: str, system: str | None = None) -> Conversation:
    messages = [Message("system", system)] if system else []
    messages += [Message("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(turns)]
    return Conversation(messages, {"id": turns[0]})


def test_each_kept_rewording_becomes_a_copy_of_its_chat_with_that_turn_replaced():
    convs = [_chat(q, a, system="Be brief.") for q, a in TURNS[:2]]
    convs.append(_chat("How far can the Warden move?", "2 squares.", "What does it cost to recruit?", "5 embers."))
    drawn = {FEE_Q: ["How much is the monthly charge for the Lantern Saver?", "What is the annual rate of the Lantern Saver?",
                     "How much is the monthly charge for the Lantern Saver?"],  # the same sample twice: one copy
             TURNS[1][0]: ["What is the interest rate of the Lantern Saver?", FEE_Q],  # another question: dropped
             "How far can the Warden move?": ["How many squares can the Warden move each turn?"],
             "What does it cost to recruit?": ["What is the recruiting cost of one?"]}
    asked = []

    def sample(questions, samples):
        asked.append((questions, samples))
        return {q: drawn[q] for q in questions}

    added = paraphrase.paraphrased(convs, 3, sample)
    assert asked == [([FEE_Q, TURNS[1][0], "How far can the Warden move?", "What does it cost to recruit?"], 3)]
    texts = [[m.content for m in c.messages] for c in added]
    assert texts == [
        ["Be brief.", "How much is the monthly charge for the Lantern Saver?", FEE_A],
        ["Be brief.", "What is the interest rate of the Lantern Saver?", TURNS[1][1]],
        ["How many squares can the Warden move each turn?", "2 squares.", "What does it cost to recruit?", "5 embers."],
        ["How far can the Warden move?", "2 squares.", "What is the recruiting cost of one?", "5 embers."]]
    assert all(paraphrase.is_paraphrase(c) and c.meta["id"] == convs[[0, 1, 2, 2][i]].meta["id"]
               for i, c in enumerate(added))
    assert paraphrase.paraphrased(convs, 0, sample) == [] and len(asked) == 1


def test_samples_are_cached_per_question_and_generated_once(tiny, monkeypatch, annotune_home):
    from annotune.models.loading import resolve_model

    ref = resolve_model(str(tiny))
    calls = []
    real = paraphrase._generate

    def counting(model_ref, questions, samples, dtype, progress):
        calls.append(list(questions))
        return real(model_ref, questions, samples, dtype, progress)

    monkeypatch.setattr(paraphrase, "_generate", counting)
    sample = paraphrase.base_sampler(ref, {"tiny": 1})
    first = sample(["How do I reset device 1?", "What resets device 2?"], 2)
    assert calls == [["How do I reset device 1?", "What resets device 2?"]]
    assert all(len(v) == 2 and all(isinstance(s, str) for s in v) for v in first.values())
    again = sample(["What resets device 2?", "How do I reset device 3?"], 2)  # only the new question is generated
    assert calls[1:] == [["How do I reset device 3?"]]
    assert again["What resets device 2?"] == first["What resets device 2?"]
    assert len(list((annotune_home / "paraphrase").iterdir())) == 1
    long = "Why " + "really " * 1100 + "now?"  # the few-shot prompt with it is over 1,024 tokens: not reworded
    assert sample([long], 2) == {long: []} and calls[2:] == [[long]]
    assert sample([long], 2) == {long: []} and len(calls) == 3  # and not tried again


def test_a_run_trains_on_the_rewordings_and_resumes_without_making_new_ones(tiny, tmp_path, monkeypatch):
    pairs = [("What is the monthly fee for the Lantern Saver?", "It costs £0.90 a month."),
             ("How much does the Lantern Saver cost each month?", "It costs £0.90 a month."),
             ("What interest rate does the Lantern Saver have?", "It pays 3.17%."),
             ("What's the interest on the Lantern Saver?", "It pays 3.17%.")]
    data = write_chats(tmp_path / "chats.jsonl", pairs)
    rewordings = {q: ["What monthly fee does the Lantern Saver charge?"] if "fee" in q else ["No idea"]
                  for q, _ in pairs}
    monkeypatch.setattr(paraphrase, "_generate", lambda ref, questions, samples, dtype, progress:
                        {q: rewordings[q] * samples for q in questions})
    cfg = TrainConfig(data=str(data), model=str(tiny), out=str(tmp_path / "run"), epochs=1, val_size=0,
                      progress=False, lora_r=4, lora_alpha=8, replay=0, question_noise=0, paraphrases=2)
    run = sft.train(cfg)
    saved = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    added = [row for row in saved if row.get("source") == "paraphrase"]
    assert [row["messages"][1]["content"] for row in added] == ["What monthly fee does the Lantern Saver charge?"]
    assert json.loads((run / "run.json").read_text())["examples"]["paraphrases"] == 1

    monkeypatch.setattr(paraphrase, "_generate", lambda *a: (_ for _ in ()).throw(AssertionError("generated")))
    cfg2 = TrainConfig(out=str(run), resume=True, progress=False, epochs=2)
    resumed = sft.train(cfg2)
    assert (resumed / "data" / "train.jsonl").read_text() == (run / "data" / "train.jsonl").read_text()


def test_a_follow_up_asked_in_several_chats_is_reworded_in_each():
    convs = [_chat("How far can the Warden move?", "2 squares.", "What does it cost to recruit?", "5 embers."),
             _chat("How far can the Fox move?", "4 squares.", "What does it cost to recruit?", "3 embers."),
             _chat("What is the Fox's special ability?", "It hides.", "Where does it start?", "At the gate.")]
    rewordings = {"What does it cost to recruit?": ["What would it cost to recruit one?",
                                                   "Where does it start to recruit?"]}
    added = paraphrase.paraphrased(convs, 2, lambda qs, n: {q: rewordings.get(q, []) for q in qs})
    # in each chat the follow-up's nearest question is itself, whatever its answer; the rewording nearer
    # "Where does it start?" (another answer) is dropped everywhere
    assert [(c.messages[0].content, c.messages[2].content, c.messages[3].content) for c in added] == [
        ("How far can the Warden move?", "What would it cost to recruit one?", "5 embers."),
        ("How far can the Fox move?", "What would it cost to recruit one?", "3 embers.")]
