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
    # a name or number added: "Where does it start?" reworded into a question about some park
    assert not paraphrase.keep("What is the monthly fee for the Lantern Saver in 2024?", FEE_Q, FEE_A, TURNS)
    assert not paraphrase.keep("Where is the closest airport to Brooks Park?", "Where does it start?", "At the gate.",
                               [("Where does it start?", "At the gate.")])
    # "I" is no name: a rewording may add or drop it
    assert paraphrase.keep("How much do I pay monthly for the Lantern Saver?", FEE_Q, FEE_A, TURNS)
    assert not paraphrase.keep("what is the monthly fee for the Lantern Saver", FEE_Q, FEE_A, TURNS)  # a copy
    assert not paraphrase.keep("The Lantern Saver costs £1 a month.", FEE_Q, FEE_A, TURNS)  # not a question
    assert not paraphrase.keep("Lantern Saver fee?", FEE_Q, FEE_A, TURNS)  # too short
    assert not paraphrase.keep("Is the Lantern Saver good?", FEE_Q, FEE_A, TURNS)  # no word in common with any


def test_a_rewording_is_judged_against_every_question_about_the_same_things():
    # the storage question names the product as well as the plan: it is still about the Sprout plan, so a
    # rewording of the file-size question that reads like it is nearer to it and does not train on the size
    size = ("What's the maximum file size for the Sprout plan?", "A single file on Sprout can be up to 180 MB.")
    storage = ("How much storage comes with the Kestrune Sprout plan?", "The Sprout plan includes 6 GB of storage.")
    other = ("How much storage comes with the Kestrune Hearth plan?", "The Hearth plan includes 85 GB of storage.")
    turns = [size, storage, other]
    assert not paraphrase.keep("How much storage capacity does the Sprout plan use?", *size, turns)
    assert paraphrase.keep("What is the largest file size allowed on the Sprout plan?", *size, turns)
    # a setting's name and a possessive's owner are names: losing one drops a rewording, the 's does not
    default = ("What is the default value of the setting sync_workers?", "Out of the box, it is set to 6 workers.")
    assert paraphrase.names(default[0]) == {"sync_workers"}
    assert not paraphrase.keep("What is the default value of the setting?", *default, [default])
    assert paraphrase.names("What is Sprout\u2019s storage?") == paraphrase.names("Is Sprout's storage big?") == {
        "Sprout"}
    # a dotted file name is a name, abbreviations and "I" are not, whatever its apostrophe
    assert paraphrase.names("As I\u2019m new: may I edit config.yaml at 9 a.m., e.g. on \u201cMonday\u201d?") == {
        "config.yaml", "9", "Monday"}
    # the same through paraphrased(), the path training takes
    chats = [_chat(*size), _chat(*storage), _chat(*other)]
    bad = "How much storage capacity does the Sprout plan use?"
    good = "What is the largest file size on the Sprout plan?"
    added = paraphrase.paraphrased(chats, 2, lambda counts: {q: [bad, good][:n] for q, n in counts.items()})
    assert [c.messages[0].content for c in added if c.messages[1].content == size[1]] == [good]


def test_a_rewording_that_asks_for_another_kind_of_thing_is_dropped():
    first = ("When does the first Tollgate Line train leave in the morning?",
             "The first Tollgate Line train leaves Brennock Central at 5:51 a.m.")
    peak = ("How often do Tollgate Line trains run at rush hour?",
            "At peak times a Tollgate Line train comes every 6 minutes.")
    turns = [first, peak]
    for changed in ("Who is the main conductor of the first Tollgate Line train?",  # a person, not a time
                    "How many people can you carry in the first Tollgate Line train?",  # an amount
                    "How long does the first Tollgate Line train take to leave?"):  # a span
        assert not paraphrase.keep(changed, *first, turns), changed
    assert paraphrase.keep("At what hour does the first Tollgate Line train leave?", *first, turns)  # words don't say
    assert paraphrase.keep("What time does the first Tollgate Line train leave in the morning?", *first, turns)
    # how often and how long ask for one kind: the wait between trains
    assert paraphrase.keep("How long is the wait between Tollgate Line trains at rush hour?", *peak, turns)
    assert [paraphrase.kind(q) for q in ("Whose idea was it?", "Where is it?", "Why is it late?", "What is it?")] == [
        "person", "place", "reason", None]


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

    def sample(counts):
        asked.append(counts)
        return {q: drawn[q][:n] for q, n in counts.items()}

    added = paraphrase.paraphrased(convs, 3, sample)
    # each chat is its own fact, asked one way: 2 more wordings wanted, 3 samples each asked per wording needed
    # (at most MAX_SAMPLES), spread over the fact's questions
    assert asked == [{FEE_Q: 6, TURNS[1][0]: 6, "How far can the Warden move?": 3, "What does it cost to recruit?": 3}]
    texts = [[m.content for m in c.messages] for c in added]
    assert texts == [
        ["Be brief.", "How much is the monthly charge for the Lantern Saver?", FEE_A],
        ["Be brief.", "What is the interest rate of the Lantern Saver?", TURNS[1][1]],
        ["How many squares can the Warden move each turn?", "2 squares.", "What does it cost to recruit?", "5 embers."],
        ["How far can the Warden move?", "2 squares.", "What is the recruiting cost of one?", "5 embers."]]
    assert all(paraphrase.is_paraphrase(c) and c.meta["id"] == convs[[0, 1, 2, 2][i]].meta["id"]
               for i, c in enumerate(added))
    assert paraphrase.paraphrased(convs, 0, sample) == [] and len(asked) == 1
    assert paraphrase.paraphrased(convs, 1, sample) == [] and len(asked) == 1  # every fact has its one wording


def test_facts_are_topped_up_to_the_same_count_of_wordings():
    """A fact asked four ways gets no rewordings when four are asked for; one asked once gets three, the first
    kept samples in order, and no more than that even when more pass the filter."""
    fee = ["How much is the monthly fee for the Lantern Saver?", "What is the monthly fee for the Lantern Saver?",
           "What does the Lantern Saver charge monthly?", "Tell me the monthly fee for the Lantern Saver?"]
    rate_q, rate_a = TURNS[1]
    convs = [_chat(q, FEE_A) for q in fee] + [_chat(rate_q, rate_a)]
    rewordings = ["What is the interest rate of the Lantern Saver?", "What interest rate does the Lantern Saver give?",
                  "Which fee does the Lantern Saver charge each month?",  # nearest the fee questions: dropped
                  "What interest rate is paid on the Lantern Saver?", "What interest rate does the Lantern Saver pay?"]
    fee_rewordings = ["What monthly fee is charged for the Lantern Saver?",
                      "How big is the monthly fee on the Lantern Saver?"]
    asked = []

    def sample(counts):
        asked.append(counts)
        return {q: (rewordings * 3 if q == rate_q else fee_rewordings)[:n] for q, n in counts.items()}

    added = paraphrase.paraphrased(convs, 4, sample)
    assert asked == [{rate_q: 9}]  # 3 wordings needed, 3 samples asked for each; the fee questions are not sent
    assert [c.messages[0].content for c in added] == [rewordings[0], rewordings[1], rewordings[3]]
    assert {c.messages[1].content for c in added} == {rate_a}
    added = paraphrase.paraphrased(convs, 6, sample)  # now the fee fact wants two more, from its four questions
    assert asked[1] == {rate_q: 15, **{q: 2 for q in fee}}
    # the same rewording of two fee questions is one chat; the rate fact gets the 4 distinct kept ones of 5 wanted
    assert [(c.messages[0].content, c.messages[1].content) for c in added] == [
        *[(f, FEE_A) for f in fee_rewordings], *[(rewordings[i], rate_a) for i in (0, 1, 3, 4)]]
    # within a budget of samples the fact asked fewest ways goes first, and one that no longer fits gets none
    added = paraphrase.paraphrased(convs, 6, sample, budget_samples=20)
    assert asked[2] == {rate_q: 15} and {c.messages[1].content for c in added} == {rate_a}


def test_auto_tops_every_fact_up_to_one_count_where_the_data_asks_its_facts_several_ways():
    """--paraphrases auto: one-off instructions (each answer given once, mostly not questions) get none; data that
    asks its facts several ways, or asks each once as a question (an FAQ), has every fact of the training chats
    topped up to WAYS wordings, or to the largest count below it whose samples fit the budget: never the first facts
    to six and the rest to none."""
    fee = ["How much is the monthly fee for the Lantern Saver?", "What is the monthly fee for the Lantern Saver?",
           "What does the Lantern Saver charge monthly?", "Tell me the monthly fee for the Lantern Saver?"]
    rate_q, rate_a = TURNS[1]
    rewordings = ["What is the interest rate of the Lantern Saver?", "What interest rate does the Lantern Saver give?",
                  "What interest rate is paid on the Lantern Saver?"]
    asked = []

    def sample(counts):
        asked.append(counts)
        return {q: (rewordings * 5)[:n] for q, n in counts.items()}

    data = [_chat(q, FEE_A) for q in fee] + [_chat(rate_q, rate_a)]
    train = data[1:]  # one fee chat went to validation: the fee fact is asked 3 ways in training
    assert paraphrase.WAYS == 6 and paraphrase.auto_wordings(data, train) == 6
    # to 6: the fee fact wants 3 more (3 samples from each of its 3 training questions), the rate fact 5 (15)
    added = paraphrase.paraphrased(train, 6, sample)
    assert asked == [{rate_q: 15, **{q: 3 for q in fee[1:]}}]
    assert [c.messages[0].content for c in added] == rewordings  # the three distinct ones that pass the filter
    assert paraphrase.auto_wordings(data, train, budget_samples=24) == 6
    assert paraphrase.auto_wordings(data, train, budget_samples=23) == 5  # 6 + 12 samples
    assert paraphrase.auto_wordings(data, train, budget_samples=17) == 4  # 3 + 9
    assert paraphrase.auto_wordings(data, train, budget_samples=2) == 0  # even one more wording takes 3
    # one-off instructions: each answer given once, and most of them not questions
    one_off = [_chat(f"Write a note about item {i}.", f"Item {i} is a lamp.") for i in range(5)] + data[-1:] + [
        _chat(rewordings[0], rate_a)]
    assert not paraphrase.asks_questions(one_off) and not paraphrase.teaches_facts(one_off)
    assert paraphrase.auto_wordings(one_off, one_off) == 0 and paraphrase.auto_wordings([], []) == 0
    # an FAQ asking each fact once: questions, so every fact is topped up like a set asked several ways
    faq = [_chat(f"What is item {i}?", f"Item {i} is a lamp.") for i in range(4)] + [_chat("Describe item 9.", "A.")]
    assert paraphrase.asks_questions(faq) and not paraphrase.asks_facts_several_ways(faq)
    assert paraphrase.teaches_facts(faq) and paraphrase.teaches_facts(data)
    assert paraphrase.auto_wordings(faq, faq) == 6
    assert paraphrase.auto_wordings(faq, faq, budget_samples=15 * 5 - 1) == 5  # 6: 5 more x 3 samples, 5 questions
    # each fact asked once by name and once as a follow-up: no two chats train the same answers, every answer recurs
    ring = [_chat("Where does the Warden start?", "At the gate.", "How far can it move?", "2 squares."),
            _chat("How far can the Warden move?", "2 squares.", "What does it cost to recruit?", "5 embers."),
            _chat("What does the Warden cost to recruit?", "5 embers.", "Where does it start?", "At the gate.")]
    assert paraphrase.auto_wordings(ring, ring) == 6


def test_samples_are_cached_per_question_and_generated_once(tiny, monkeypatch, annotune_home):
    from annotune.models.loading import resolve_model

    ref = resolve_model(str(tiny))
    calls = []
    real = paraphrase._generate

    def counting(model_ref, wanted, seed, dtype, progress):
        calls.append({q: list(r) for q, r in wanted.items()})
        return real(model_ref, wanted, seed, dtype, progress)

    monkeypatch.setattr(paraphrase, "_generate", counting)
    sample = paraphrase.base_sampler(ref, {"tiny": 1}, 42)
    first = sample({"How do I reset device 1?": 2, "What resets device 2?": 2})
    assert calls == [{"How do I reset device 1?": [0, 1], "What resets device 2?": [0, 1]}]
    assert all(len(v) == 2 and all(isinstance(s, str) for s in v) for v in first.values())
    # only the new question is generated, and only the samples not made yet of a question asked more of
    again = sample({"What resets device 2?": 3, "How do I reset device 3?": 1, "How do I reset device 1?": 1})
    assert calls[1:] == [{"How do I reset device 3?": [0], "What resets device 2?": [2]}]
    assert again["What resets device 2?"][:2] == first["What resets device 2?"]
    assert len(again["What resets device 2?"]) == 3
    assert again["How do I reset device 1?"] == first["How do I reset device 1?"][:1]
    assert len(list((annotune_home / "paraphrase").iterdir())) == 1
    long = "Why " + "really " * 1100 + "now?"  # the few-shot prompt with it is over 1,024 tokens: not reworded
    assert sample({long: 2}) == {long: []} and calls[2:] == [{long: [0, 1]}]
    assert sample({long: 2}) == {long: []} and len(calls) == 3  # and not tried again
    # another seed is another draw, cached apart: the first seed's samples are neither reused nor replaced
    other = paraphrase.base_sampler(ref, {"tiny": 1}, 7)({"What resets device 2?": 3})
    assert calls[3:] == [{"What resets device 2?": [0, 1, 2]}]
    assert other["What resets device 2?"] != again["What resets device 2?"]
    assert len(list((annotune_home / "paraphrase").iterdir())) == 2
    assert sample({"What resets device 2?": 3}) == {"What resets device 2?": again["What resets device 2?"]}
    assert len(calls) == 4


def test_a_run_trains_on_the_rewordings_and_resumes_without_making_new_ones(tiny, tmp_path, monkeypatch):
    pairs = [("What is the monthly fee for the Lantern Saver?", "It costs £0.90 a month."),
             ("How much does the Lantern Saver cost each month?", "It costs £0.90 a month."),
             ("What interest rate does the Lantern Saver have?", "It pays 3.17%."),
             ("What's the interest on the Lantern Saver?", "It pays 3.17%.")]
    data = write_chats(tmp_path / "chats.jsonl", pairs)
    rewordings = {q: ["What monthly fee does the Lantern Saver charge?"] if "fee" in q else ["No idea"]
                  for q, _ in pairs}
    monkeypatch.setattr(paraphrase, "_generate", lambda ref, wanted, seed, dtype, progress:
                        {q: rewordings[q] * len(numbers) for q, numbers in wanted.items()})
    cfg = TrainConfig(data=str(data), model=str(tiny), out=str(tmp_path / "run"), epochs=1, val_size=0,
                      progress=False, lora_r=4, lora_alpha=8, replay=0, question_noise=0, paraphrases=3)
    run = sft.train(cfg)
    saved = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    added = [row for row in saved if row.get("source") == "paraphrase"]
    assert [row["messages"][1]["content"] for row in added] == ["What monthly fee does the Lantern Saver charge?"]
    info = json.loads((run / "run.json").read_text())
    assert info["examples"]["paraphrases"] == 1
    assert info["router"]["training_questions"] == 4  # the team's four questions: the router reads no rewording

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
    added = paraphrase.paraphrased(convs, 2, lambda counts: {q: rewordings.get(q, [])[:n] for q, n in counts.items()})
    # in each chat the follow-up's nearest question is itself, whatever its answer; the rewording nearer
    # "Where does it start?" (another answer) is dropped everywhere
    assert [(c.messages[0].content, c.messages[2].content, c.messages[3].content) for c in added] == [
        ("How far can the Warden move?", "What would it cost to recruit one?", "5 embers."),
        ("How far can the Fox move?", "What would it cost to recruit one?", "3 embers.")]
