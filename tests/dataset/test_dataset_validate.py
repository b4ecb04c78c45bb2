"""Semantic checks, statistics and load_valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotune.conversation import Conversation
from annotune.dataset import Problem, load_valid, read_dataset, validate
from annotune.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
PROBLEMS_FILE = FIXTURES / "problems.jsonl"

# Every problem planted in problems.jsonl, as (line, field); see the comments of each test for why.
EXPECTED_PROBLEMS = {
    (2, "json"),  # truncated JSON
    (3, "record"),  # a list instead of an object
    (4, "messages"),  # messages is a string
    (5, "messages[0].content"),  # content is a number
    (6, "messages[1].weight"),  # weight 2
    (7, "messages[2].role"),  # role 'bot'
    (8, "messages[0].role"),  # role missing
    (9, "messages[1].content"),  # content missing
    (10, "messages[0].content"),  # whitespace-only content
    (11, "messages"),  # no assistant turn
    (12, "messages[1].role"),  # system not first
    (13, "messages[0].role"),  # starts with the assistant
    (14, "messages[2].role"),  # ends with a user message
    (15, "messages"),  # every assistant turn has weight 0
    (16, "messages"),  # duplicate of line 1
    (19, "messages"),  # empty message list
    (20, "messages[0]"),  # message is a string
    (20, "messages[1].weight"),  # weight true
}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def chat(*turns: str, **extra) -> dict:
    """An openai record alternating user and assistant turns."""
    roles = ["user", "assistant"]
    return {"messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)], **extra}


def test_every_planted_problem_is_reported_at_its_line_and_field():
    report = validate(read_dataset(PROBLEMS_FILE))
    found = {(p.line, p.field) for p in report.problems}
    missing = EXPECTED_PROBLEMS - found
    unexpected = found - EXPECTED_PROBLEMS
    assert not missing, f"not reported: {sorted(missing)}"
    assert not unexpected, f"reported but not planted: {sorted(unexpected)}"
    assert len(report.problems) == len(EXPECTED_PROBLEMS)  # and none reported twice
    assert not report.ok
    # Lines 1 and 18 are fine and must not be mentioned.
    assert not any(p.line in (1, 17, 18) for p in report.problems)


def test_problem_messages_say_what_is_wrong_and_what_to_do():
    report = validate(read_dataset(PROBLEMS_FILE))
    for problem in report.problems:
        what, _, todo = problem.message.partition("; ")
        assert what and todo, f"message lacks advice: {problem}"
    by_location = {(p.line, p.field): p for p in report.problems}
    bot = by_location[(7, "messages[2].role")]
    assert str(bot) == f"{PROBLEMS_FILE}:7:messages[2].role: unknown role 'bot'; use system, user or assistant"
    assert "line 1" in by_location[(16, "messages")].message
    assert [p.line for p in report.problems] == sorted(p.line for p in report.problems)


def test_problem_str_shape():
    assert str(Problem("data.jsonl", 7, "messages[2].role", "bad; fix")) == "data.jsonl:7:messages[2].role: bad; fix"


def test_duplicates_name_both_lines(tmp_path):
    records = [chat("q", "a"), chat("other", "b"), chat("q", "a", id="x"), chat("q", "a")]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    report = validate(read_dataset(path))
    assert [(p.line, p.field) for p in report.problems] == [(3, "messages"), (4, "messages")]
    assert all("duplicate of the conversation at line 1" in p.message for p in report.problems)


def test_same_text_different_weight_is_not_a_duplicate(tmp_path):
    weighted = chat("q", "a")
    weighted["messages"][1]["weight"] = 1
    path = write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), weighted])
    assert validate(read_dataset(path)).ok


def test_weight_zero_on_some_turns_is_fine_and_counted(tmp_path):
    record = chat("q1", "a1", "q2", "a2")
    record["messages"][1]["weight"] = 0
    path = write_jsonl(tmp_path / "w.jsonl", [record])
    report = validate(read_dataset(path))
    assert report.ok
    assert (report.stats.assistant_turns, report.stats.trained_turns) == (2, 1)


def test_semantic_fields_use_the_source_format_spelling(tmp_path):
    sharegpt = tmp_path / "s.jsonl"
    sharegpt.write_text('{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]}\n')
    [problem] = validate(read_dataset(sharegpt)).problems
    assert problem.field == "conversations[1].value"

    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": ""}])
    [problem] = validate(read_dataset(alpaca)).problems
    assert problem.field == "output"

    csv_path = tmp_path / "c.csv"
    csv_path.write_text("ask,reply\n,answer\n")
    [problem] = validate(read_dataset(csv_path, question_column="ask", answer_column="reply")).problems
    assert (problem.line, problem.field) == (2, "ask")


def word_count(conversation: Conversation) -> int:
    return sum(len(m.content.split()) for m in conversation.messages)


def test_over_length_uses_the_token_counter(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [chat("one two", "three"), chat("a " * 10, "b " * 5)])
    report = validate(read_dataset(path), token_length=word_count, max_length=12)
    [problem] = report.problems
    assert str(problem) == f"{path}:2:messages: 15 tokens, over --max-length 12; shorten it or raise --max-length"
    assert report.stats.length_unit == "tokens"
    assert (report.stats.length_min, report.stats.length_max) == (3, 15)


def test_max_length_without_counter_is_a_programming_error(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [chat("q", "a")])
    with pytest.raises(ValueError):
        validate(read_dataset(path), max_length=10)


def test_stats_in_characters(tmp_path):
    records = [chat("ab", "cd"), chat("abc", "defg", "h", "i"), chat("x" * 50, "y" * 50)]
    path = write_jsonl(tmp_path / "s.jsonl", records)
    stats = validate(read_dataset(path)).stats
    assert (stats.examples, stats.turns, stats.assistant_turns) == (3, 8, 4)
    assert stats.turns_per_example == pytest.approx(8 / 3)
    assert stats.length_unit == "characters"
    assert (stats.length_min, stats.length_p50, stats.length_p95, stats.length_max) == (4, 9, 100, 100)
    assert stats.length_mean == pytest.approx((4 + 9 + 100) / 3)


def test_stats_count_the_chats_that_give_each_answer_and_name_answers_asked_few_ways(tmp_path):
    # five facts asked four ways (answer case and spacing aside), two asked once: those two are under half of 4
    records = [chat(f"Ask {f} way {w}?", f"Fact {f}." if w % 2 else f"  fact {f}. ")
               for f in range(5) for w in range(4)]
    records[6:6] = [chat("How long are   old versions kept?", "Thirty days."), chat("Sync workers?", "Four.")]
    path = write_jsonl(tmp_path / "facts.jsonl", records)
    stats = validate(read_dataset(path)).stats
    assert (stats.ways, stats.typical_ways, stats.rare_count) == ({4: 5, 1: 2}, 4, 2)
    assert stats.rare == [f"{path}:7: How long are old versions kept?", f"{path}:8: Sync workers?"]
    text = stats.format_text()
    assert "answers given in 1 chat: 2, in 4 chats: 5 (typical: 4)" in text
    assert "2 answers are given in fewer than half the typical 4 chats" in text and f"  {path}:8: Sync workers?" in text

    # asked twice against a typical 4 is half, not under it; one-off answers (typical 1) are no facts set
    for name, sets in (("level.jsonl", records[:6] + records[8:]),
                       ("twice.jsonl", records + [chat("Old versions?", "Thirty days."), chat("Workers?", "Four.")]),
                       ("oneoff.jsonl", [chat(f"Write poem {i}", f"Poem {i}.") for i in range(6)])):
        text = validate(read_dataset(write_jsonl(tmp_path / name, sets))).format_text()
        assert "fewer than half" not in text, name
        assert "answers given in " in text, name


def test_stats_name_only_the_first_few_answers_asked_few_ways(tmp_path):
    records = [chat(f"Ask {f} way {w}?", f"Fact {f}.") for f in range(8) for w in range(4)]
    records += [chat(f"Rare {r}?", f"Rare answer {r}.") for r in range(5)]
    path = write_jsonl(tmp_path / "facts.jsonl", records)
    stats = validate(read_dataset(path)).stats
    assert stats.rare_count == 5 and len(stats.rare) == 3 and stats.rare[0] == f"{path}:33: Rare 0?"
    assert stats.format_text().endswith("  ... and 2 more")


def test_format_text_lists_problems_then_stats():
    text = validate(read_dataset(PROBLEMS_FILE)).format_text()
    lines = text.splitlines()
    assert lines[0].startswith(f"{PROBLEMS_FILE}:2:json: ")
    assert f"{len(EXPECTED_PROBLEMS)} problems found" in lines
    assert text.index("problems found") < text.index("examples: ")
    assert "length in characters: min" in text


def test_load_valid_returns_conversations_of_a_clean_file():
    conversations = load_valid(FIXTURES / "qa.csv")
    assert len(conversations) == 2


def test_load_valid_lists_every_problem(tmp_path):
    with pytest.raises(DataError) as caught:
        load_valid(PROBLEMS_FILE)
    message = str(caught.value)
    for line, field in EXPECTED_PROBLEMS:
        assert f"{PROBLEMS_FILE}:{line}:{field}: " in message


def test_load_valid_caps_a_long_list(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [chat(f"only question {i}") for i in range(60)])
    with pytest.raises(DataError) as caught:
        load_valid(path)
    message = str(caught.value)
    assert "60 problems" in message
    assert f"{path}:50:messages" in message and f"{path}:51:messages" not in message
    assert message.endswith("... and 10 more")


def test_load_valid_passes_csv_options(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("ask,reply\nq,a\n")
    [conversation] = load_valid(path, question_column="ask", answer_column="reply")
    assert conversation.messages[1].content == "a"
