"""Answer metrics on hand-checked examples, and the statistics on cases whose answer is known."""

from __future__ import annotations

import json

import pytest

from annotune.errors import DataError
from annotune.evaluate import metrics
from annotune.evaluate.data import read_questions
from annotune.evaluate.run import load_probe, probe_correct


def test_normalisation_exact_match_and_token_f1():
    assert metrics.normalize("The  Answer, is: 42!") == "answer is 42"
    assert metrics.exact_match("the answer is 42.", "Answer is 42") == 1.0
    assert metrics.exact_match("42", "forty-two") == 0.0
    # answer "red car fast" vs reference "the red car": common {red, car} -> P = 2/3, R = 2/2, F1 = 0.8
    assert metrics.token_f1("red car fast", "the red car") == pytest.approx(0.8)
    assert metrics.token_f1("", "") == 1.0 and metrics.token_f1("x", "") == 0.0
    assert metrics.token_f1("blue", "red") == 0.0


def test_rouge_l_and_keys():
    # LCS of "a b c d" and "a c d" is "a c d": P = 3/4, R = 3/3, F = 6/7
    assert metrics.rouge_l("a b c d", "a c d") == pytest.approx(6 / 7)
    assert metrics.key_hit("Call +44 20 7946 0000 any day", ["+44 20 7946 0000"]) == 1.0
    assert metrics.key_hit("Tobiah MARR founded it", ["tobiah marr", "Renske"]) == 0.0
    assert metrics.key_hit("Tobiah Marr and Renske", ["tobiah marr", "Renske"]) == 1.0


def test_keys_are_found_only_whole():
    # a number key is not found inside a longer number, nor a word inside a longer word
    assert metrics.key_hit("You need at least £40.", ["£40"]) == 1.0
    assert metrics.key_hit("You need at least £400 to open it", ["£40"]) == 0.0
    assert metrics.key_hit("The fee is £40.50 a month", ["£40"]) == 0.0
    assert metrics.key_hit("It costs £1,900, paid once", ["£1,900"]) == 1.0
    assert metrics.key_hit("It costs £1,900.00", ["£1,900"]) == 0.0
    assert metrics.key_hit("The first train leaves at 5:12 a.m. on weekdays", ["5:12 a.m."]) == 1.0
    assert metrics.key_hit("The first train leaves at 15:12 a.m.", ["5:12 a.m."]) == 0.0
    assert metrics.key_hit("Trains come every 4 minutes", ["4 minutes"]) == 1.0
    assert metrics.key_hit("Trains come every 14 minutes", ["4 minutes"]) == 0.0
    assert metrics.key_hit("A five-year warranty", ["five-year"]) == 1.0
    assert metrics.key_hit("A twenty-five-year warranty", ["five-year"]) == 1.0  # "-" is a boundary
    assert metrics.key_hit("It runs a rewarding scheme", ["reward"]) == 0.0
    assert metrics.key_hit("Logs go to /var/lib/kestrune/journal.", ["/var/lib/kestrune/journal"]) == 1.0
    assert metrics.first_mention("Saturn, not Jupiter", ["jupiter", "saturn"]) == 0


def test_bootstrap_interval_on_a_known_case():
    assert metrics.bootstrap_ci([1.0] * 30) == (1.0, 1.0)
    # 50 of 100 right: the normal approximation gives 0.5 +- 1.96 * 0.05 = [0.402, 0.598]
    low, high = metrics.bootstrap_ci([1.0] * 50 + [0.0] * 50, resamples=4000)
    assert low == pytest.approx(0.40, abs=0.025) and high == pytest.approx(0.60, abs=0.025)
    assert metrics.bootstrap_ci([1.0] * 50 + [0.0] * 50, seed=3) == metrics.bootstrap_ci([1.0] * 50 + [0.0] * 50,
                                                                                         seed=3)


def test_paired_test_tells_a_real_gain_from_noise():
    base = [0.0] * 40
    better = [1.0] * 30 + [0.0] * 10
    test = metrics.paired_test(base, better)
    assert test["difference"] == pytest.approx(0.75) and test["p_value"] < 0.001
    assert test["ci95"][0] > 0.5
    # one question of 40 changed: no evidence of a difference
    noise = metrics.paired_test(base, [1.0] + [0.0] * 39)
    assert noise["p_value"] > 0.5 and noise["ci95"][0] <= 0
    assert metrics.paired_test(base, base)["p_value"] == 1.0
    # exact p for 3 discordant pairs all one way: 2 * (1/2)^3 = 0.25
    assert metrics.paired_test([0.0] * 3, [1.0] * 3, resamples=20000)["p_value"] == pytest.approx(0.25, abs=0.02)


def test_probe_answers_match_whole_words():
    assert probe_correct("The capital is Paris.", ["Paris"])
    assert not probe_correct("It is Parisian food", ["Paris"])
    assert probe_correct("A week has 7 days", ["seven", "7"]) and not probe_correct("It has 17 days", ["7"])
    # a number counts only whole: not the last digit of a decimal, nor the first of one
    assert not probe_correct("Water freezes at -18.0°C.", ["0", "zero"]) and not probe_correct("About 0.5 kg", ["0"])
    assert probe_correct("Water freezes at 0°C, 32°F.", ["0", "zero"]) and probe_correct("It is 24.", ["24"])
    assert probe_correct("Four, or 4.", ["4"]) and probe_correct("1,024 and 4, then", ["4"])


def test_probe_answers_naming_a_rejected_answer_first_are_wrong():
    star = (["Sun"], ["Proxima", "Alpha Centauri"])
    assert not probe_correct("It is Proxima Centauri, very close to the Sun.", *star)
    assert not probe_correct("alpha centauri, then the sun", *star)
    assert probe_correct("The Sun; after it, Proxima Centauri.", *star)
    assert probe_correct("Jupiter, more than twice the mass of Saturn", ["Jupiter"], ["Saturn"])
    assert not probe_correct("Saturn is bigger than Jupiter", ["Jupiter"], ["Saturn"])
    assert not probe_correct("Saturn", ["Jupiter"], ["Saturn"])  # a rejected answer alone
    assert probe_correct("Mars, not Venus", ["Mars"], [])  # no rejected list: any mention of an accepted one


def test_every_probe_question_has_answers_and_no_rejected_answer_in_its_own_words():
    items = load_probe()
    assert len(items) == 40 and len({i["id"] for i in items}) == 40
    for item in items:
        assert item["accept"] and all(isinstance(a, str) and a for a in item["accept"])
        for wrong in item.get("reject", []):  # a rejected word in the question would fail every restating answer
            assert wrong.lower() not in item["question"].lower(), item
            assert not probe_correct(wrong, item["accept"], item["reject"]), item
        assert probe_correct(item["accept"][0], item["accept"], item.get("reject", [])), item


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_questions_keep_reference_and_keys(tmp_path):
    rows = [{"id": "a", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"},
                                     {"role": "assistant", "content": "Ref."}], "keys": ["Ref"]},
            {"messages": [{"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "R2"}]}]
    questions = read_questions(_write(tmp_path / "h.jsonl", rows))
    assert [q.id for q in questions] == ["a", "2"]
    assert questions[0].messages[-1] == {"role": "user", "content": "Q?"} and questions[0].reference == "Ref."
    assert questions[0].keys == ["Ref"] and questions[1].keys == []


def test_bad_keys_and_shapes_are_reported_by_line(tmp_path):
    user = {"role": "user", "content": "Q?"}
    rows = [{"messages": [user, {"role": "assistant", "content": "R"}], "keys": "R"},
            {"messages": [user, {"role": "assistant", "content": "R"}], "keys": ["R", ""]},
            {"messages": [user]},
            {"id": 1, "messages": [user, {"role": "assistant", "content": "R"}]},
            {"id": 1, "messages": [user, {"role": "assistant", "content": "R"}]}]
    with pytest.raises(DataError) as err:
        read_questions(_write(tmp_path / "bad.jsonl", rows))
    message = str(err.value)
    for expected in ("bad.jsonl:1:keys: expected a list", "bad.jsonl:2:keys:", "bad.jsonl:3:messages: end with",
                     "bad.jsonl:5:id: '1' is used twice"):
        assert expected in message
    assert "bad.jsonl:4" not in message
