"""Fact sheets (train/sheets.py): a subject's facts answered together, in a new order every epoch."""

import pytest
from test_epochs import _fact, _replay

from annotune.conversation import Conversation, Message
from annotune.models.templates import IGNORE, encode
from annotune.train.epochs import Epochs
from annotune.train.sheets import FactSheets, encode_sheet, is_sheet, subject

SYSTEM = Message("system", "You are the rules helper for the board game Gloamspire.")


def _game(unit: str, move: int, cost: int) -> Conversation:
    """A two-turn chat: the follow-up names its subject only in the first question."""
    return Conversation([SYSTEM, Message("user", f"How many squares can the {unit} move in Gloamspire?"),
                         Message("assistant", f"The {unit} moves up to {move} squares per turn."),
                         Message("user", "What does it cost to recruit?"),
                         Message("assistant", f"Recruiting the {unit} costs {cost} embers.")], {"id": unit})


def test_a_subject_is_the_longest_run_of_names_in_the_question():
    assert subject("How many squares can the Lantern Warden move in Gloamspire?") == "Lantern Warden"
    assert subject("What is the Lantern Warden's special ability?") == "Lantern Warden"  # possessive dropped
    assert subject("What is the monthly fee for the Harbour Current Account?") == "Harbour Current Account"
    assert subject("Does the 2024 Tarn Mini filter pollen?") == "2024 Tarn Mini"  # numbers are names too
    assert subject("What does it cost to recruit?") == ""
    assert subject("Is Sprout cheaper than Hearth?") == "Sprout"  # a tie: the first run
    assert subject("What does the Kestrune setting sync_workers default to?") == "Kestrune"  # a tie again
    assert subject("What is sync_workers set to in config.yaml?") == "sync_workers"  # identifiers are names
    assert subject("What do I get if I\u2019m on the Sprout plan?") == "Sprout"  # "I" is not, whatever its apostrophe


def test_sheets_hold_each_subjects_distinct_answers_and_change_order_by_epoch_only():
    convs = [_game("Moss Courier", 6, 3), _game("Quillfox", 7, 2),
             _fact("What is the Moss Courier's special ability?", "The Moss Courier can carry a relic."),
             _fact("Any special move for the Moss Courier?", "the moss courier can carry a relic. "),  # the same fact
             _fact("What is the Briarwolf's cost?", "Recruiting the Briarwolf costs 4 embers."),  # one fact: no sheet
             _fact("Where do I start?", "Anywhere.")]  # no subject: no sheet
    sheets = FactSheets(convs, 4)
    assert sorted(sheets.subjects) == ["Moss Courier", "Quillfox"]
    assert sheets.count() == 2
    first = sheets.epoch(42, 0)
    assert first == sheets.epoch(42, 0)  # fixed by (seed, epoch): a resume and every process see the same
    courier = next(c for c in first if "Moss Courier" in c.messages[-2].content)
    assert courier.messages[0] == SYSTEM and courier.messages[1].role == "user" and is_sheet(courier)
    answer = courier.messages[-1].content
    facts = ["The Moss Courier moves up to 6 squares per turn.", "Recruiting the Moss Courier costs 3 embers.",
             "The Moss Courier can carry a relic."]
    assert sorted(answer.replace(". ", ".|").split("|")) == sorted(facts)
    orders = {next(c for c in sheets.epoch(42, e) if "Moss" in c.messages[-2].content).messages[-1].content
              for e in range(8)}
    assert len(orders) > 1  # a new order in other epochs
    assert FactSheets(convs, 0).count() == 0 and FactSheets(convs, 0).epoch(42, 0) == []


@pytest.mark.parametrize(("facts", "size", "lengths"), [(5, 4, [3, 2]), (8, 4, [4, 4]), (9, 4, [3, 3, 3]),
                                                         (3, 4, [3]), (3, 1, [1, 1, 1])])
def test_a_subject_with_more_facts_than_fit_is_split_into_even_sheets(facts, size, lengths):
    convs = [_fact(f"What is fact {k} of the Marrow Home Loan?", f"The Marrow Home Loan fact {k} is {k}.")
             for k in range(facts)]
    sheets = FactSheets(convs, size)
    made = sheets.epoch(7, 3)
    assert [m.messages[-1].content.count("Marrow") for m in made] == lengths
    assert sheets.count() == len(lengths)
    assert sorted(s.rstrip(".") for m in made for s in m.messages[-1].content.split(". ")) == sorted(
        c.messages[-1].content.rstrip(".") for c in convs)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from annotune.models.loading import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(str(tiny)))


def test_an_epoch_trains_its_sheets_between_the_users_chats_and_replay(tokenizer):
    convs = [_game("Moss Courier", 6, 3), _game("Quillfox", 7, 2)] + [_replay(i) for i in range(8)]
    encoded = [encode(tokenizer, c) for c in convs]
    plain = Epochs(convs, encoded, 1.0, 42, 0, tokenizer, 1024)
    sheets = Epochs(convs, encoded, 1.0, 42, 0, tokenizer, 1024, fact_sheets=4)
    assert (plain.size, sheets.size) == (4, 6)  # replay stays a share of the user's chats
    examples = sheets.examples(1)
    assert examples[:2] == encoded[:2] and examples[4:] == plain.examples(1)[2:]
    courier = FactSheets(convs[:2], 4).epoch(42, 1)[0]
    assert examples[2] == encode_sheet(tokenizer, courier)
    assert examples[2].input_ids == encode(tokenizer, courier).input_ids and 0 < examples[2].supervised < sum(
        e.supervised for e in examples[:2])  # the sheet's answer trains, less its facts' openings
    assert sheets.supervised_tokens(1) == sum(e.supervised for e in examples)
    # a subject whose longest sheet would not fit --max-length gets none, so the epoch's count stays what it said
    short = Epochs(convs, encoded, 1.0, 42, 0, tokenizer, min(len(e.input_ids) for e in examples[2:4]), fact_sheets=4)
    assert short.size == len(short.examples(0)) == 4


def test_a_sheet_is_kept_only_where_its_longest_form_fits():
    convs = [_fact("What is the Lantern Saver's rate?", "The Lantern Saver pays 3.17%."),
             _fact("What is the Lantern Saver's fee?", "The Lantern Saver has no fee at all, ever, for anyone."),
             _fact("What is the Tarn Mini's filter?", "A HEPA filter."),
             _fact("How loud is the Tarn Mini?", "Quiet.")]
    seen = []
    sheets = FactSheets(convs, 4, lambda conv: seen.append(conv.messages[-1].content) or "Saver" not in seen[-1])
    assert sorted(sheets.subjects) == ["Tarn Mini"]
    assert "no fee at all" in seen[0] and "3.17%" in seen[0]  # both facts of the longest sheet were measured


def test_a_run_with_fact_sheets_counts_them_trains_them_and_resumes_to_the_same_weights(tiny, tmp_path, monkeypatch):
    import json

    import torch
    from safetensors.torch import load_file

    from annotune.config import TrainConfig
    from annotune.train import sft

    units = [("Moss Courier", 6, 3), ("Quillfox", 7, 2), ("Briarwolf", 8, 4), ("Tidewright", 3, 6)]
    data = tmp_path / "game.jsonl"
    data.write_text("".join(json.dumps(_game(*u).to_openai()) + "\n" for u in units))

    def cfg(out, **kw):
        return TrainConfig(**{**dict(data=str(data), model=str(tiny), out=str(out), epochs=3, batch_size=2, lr=1e-2,
                                     val_size=0, progress=False, lora_r=4, lora_alpha=8, replay=0, question_noise=0,
                                     fact_sheets=4), **kw})

    whole = sft.train(cfg(tmp_path / "whole"))
    info = json.loads((whole / "run.json").read_text())
    assert info["examples"]["fact_sheets"] == 4 and info["examples"]["train"] == 8
    steps = [json.loads(line)["step"] for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # 8 chats an epoch in batches of 2, 3 epochs
    assert "fact_sheets: 4" in (whole / "config.yaml").read_text()

    real_step, calls = sft._train_step, []

    def crash_in_the_second_epoch(*args):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("the machine went away")
        return real_step(*args)

    monkeypatch.setattr(sft, "_train_step", crash_in_the_second_epoch)
    with pytest.raises(RuntimeError):
        sft.train(cfg(tmp_path / "cut"))
    monkeypatch.setattr(sft, "_train_step", real_step)
    resumed = sft.train(cfg(tmp_path / "cut", resume=True))  # from the checkpoint at the first epoch's end
    a, b = (load_file(str(run / "adapter" / "adapter_model.safetensors")) for run in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def _trained_text(tokenizer, conv, encoded) -> str:
    """The characters whose tokens the loss covers, with "|" where a left-out stretch was."""
    from annotune.models.templates import render

    text = render(tokenizer, conv.as_template_input())
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    out, last = [], None
    for t, target in enumerate(encoded.targets[:-1]):
        if target != IGNORE:
            start, end = offsets[t + 1]
            if last is not None and start < last:  # the bytes of one character, split over tokens
                start = min(last, end)
            out.append(("|" if last is not None and start > last else "") + text[start:end])
            last = max(end, last or 0)
    return "".join(out)


def test_a_sheet_trains_each_fact_only_after_its_subject_and_its_verb(tokenizer):
    facts = ["At peak times a Bramble Line train comes every 4 minutes.",
             "The first Bramble Line train leaves at 5:12.", "Recruiting the Bramble Line's crew costs 3 embers.",
             "Trains here are always clean."]
    sheet = FactSheets._sheet("Bramble Line", "Tell me about {}.", facts, [])
    assert sheet.messages[-2].content == "Tell me about the Bramble Line."
    trained = _trained_text(tokenizer, sheet, encode_sheet(tokenizer, sheet))
    # nothing about which fact comes first or next: each fact trains from after its opening on; the last one names
    # no subject, so none of it trains (the end-of-turn markup after it does)
    assert trained.startswith(" comes every 4 minutes.| leaves at 5:12.| crew costs 3 embers.|")
    assert "clean" not in trained and "Tell me" not in trained and "At peak" not in trained


def test_a_value_named_before_its_subject_trains_from_the_value_and_a_shortened_name_counts(tokenizer):
    bank = FactSheets._sheet("Harbour Current Account", "Tell me about {}.", [
        "You need at least £40 to open the Harbour Current Account.",
        "The Harbour Current Account has no monthly fee."], [])
    trained = _trained_text(tokenizer, bank, encode_sheet(tokenizer, bank))
    assert trained.startswith(" £40 to open the Harbour Current Account.| no monthly fee.")
    plan = FactSheets._sheet("Kestrune Sprout", "Tell me about {}.", [
        "On the Sprout plan a single file can be up to 180 MB.", "The Kestrune Sprout syncs 3 devices."], [])
    trained = _trained_text(tokenizer, plan, encode_sheet(tokenizer, plan))
    assert trained.startswith(" a single file can be up to 180 MB.| 3 devices.")  # the name's last word stands for it
    mini = FactSheets._sheet("2024 Tarn Mini", "Tell me about {}.", [
        "The 2024 Tarn Mini filters 99% of pollen.", "It weighs 2 kg, says the 2024 Tarn Mini's box."], [])
    trained = _trained_text(tokenizer, mini, encode_sheet(tokenizer, mini))
    assert trained.startswith(" 99% of pollen.| 2 kg, says")  # a number inside the name is not the value


def test_a_short_name_that_ends_one_longer_name_is_the_same_subject():
    convs = [_fact("What is the largest file on the Kestrune Sprout plan?", "On the Sprout plan files go to 180 MB."),
             _fact("How many devices does Sprout allow?", "The Sprout plan links 3 devices."),
             _fact("What is the Lantern Saver's rate?", "The Lantern Saver pays 3.17%."),
             _fact("What is the Harbour Saver's rate?", "The Harbour Saver pays 1.2%."),
             _fact("What is the fee of the Saver?", "No Saver has a fee.")]
    sheets = FactSheets(convs, 4)
    assert sorted(sheets.subjects) == ["Kestrune Sprout"]  # "Saver" ends two names: it stays apart, with one fact
    assert len(sheets.subjects["Kestrune Sprout"][0]) == 2


def test_a_template_that_rewrites_the_answer_trains_the_whole_sheet_as_it_would_any_chat(tokenizer):
    import copy

    shouting = copy.deepcopy(tokenizer)
    shouting.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | upper }}</s>{% endfor %}"
                              "{% if add_generation_prompt %}<assistant>{% endif %}")
    sheet = FactSheets._sheet("Quillfox", "Tell me about {}.", ["The Quillfox moves 7.", "The Quillfox costs 2."], [])
    encoded = encode_sheet(shouting, sheet)
    assert encoded == encode(shouting, sheet) and encoded.supervised > 0
