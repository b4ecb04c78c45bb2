"""Reading, detecting and writing every dataset format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotune.conversation import Conversation, Message
from annotune.dataset import FORMATS, detect_format, read_dataset, write_dataset
from annotune.dataset.files import write_atomically
from annotune.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def roles_and_texts(conversation: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in conversation.messages]


def without_location(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in ("file", "line")}


# ------------------------------------------------------------------------------------------------ reading


def test_openai_keeps_messages_weights_meta_and_lines():
    result = read_dataset(FIXTURES / "openai.jsonl")
    assert result.format == "openai" and result.problems == []
    first, second, third = result.conversations
    assert roles_and_texts(first)[0] == ("system", "You are the HR assistant.")
    assert first.meta == {"file": str(FIXTURES / "openai.jsonl"), "line": 1, "id": "leave-1", "source": "handbook"}
    assert [m.weight for m in second.messages] == [None, 0, None, 1]
    # Line 3 of the file is blank, so the third record starts on line 4 and keeps its non-ASCII id.
    assert third.meta["line"] == 4 and third.meta["id"] == "café-3"
    assert third.messages[0].content == "Où est la cantine ?"


def test_alpaca_array_joins_instruction_and_input_and_locates_records():
    result = read_dataset(FIXTURES / "alpaca.json")
    assert result.format == "alpaca" and result.problems == []
    first, second, third = result.conversations
    assert roles_and_texts(first) == [
        ("user", "Summarise the leave policy.\n\nEmployees get 25 days a year."),
        ("assistant", "25 days of leave per year."),
    ]
    assert roles_and_texts(second)[0] == ("system", "Answer briefly.")
    assert roles_and_texts(third)[0] == ("user", "Name the office city.")  # empty input adds no blank line
    # Real line numbers inside the JSON array, including the record spread over several lines.
    assert [c.meta["line"] for c in result.conversations] == [2, 3, 8]
    assert without_location(first.meta) == {"id": "a1"}


def test_alpaca_jsonl_is_read_too(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text('{"instruction": "Say hi", "output": "Hi"}\n', encoding="utf-8")
    result = read_dataset(path)
    assert result.format == "alpaca"
    assert roles_and_texts(result.conversations[0]) == [("user", "Say hi"), ("assistant", "Hi")]


def test_sharegpt_maps_speaker_names():
    result = read_dataset(FIXTURES / "sharegpt.json")
    assert result.format == "sharegpt" and result.problems == []
    first, second = result.conversations
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert [m.role for m in second.messages] == ["user", "assistant", "user", "assistant"]
    assert second.messages[-1].weight == 1
    assert [c.meta["line"] for c in result.conversations] == [2, 3]


def test_sharegpt_unknown_speaker_is_a_problem(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}\n')
    result = read_dataset(path)
    assert result.conversations == []
    [problem] = result.problems
    assert (problem.line, problem.field) == (1, "conversations[1].from")
    assert "'robot'" in problem.message and "human" in problem.message


def test_prompt_completion_with_optional_system():
    result = read_dataset(FIXTURES / "prompt_completion.jsonl")
    assert result.format == "prompt_completion" and result.problems == []
    first, second = result.conversations
    assert roles_and_texts(first) == [("user", "What is the VPN address?"), ("assistant", "vpn.example.com")]
    assert without_location(first.meta) == {"source": "it-wiki"}
    assert [m.role for m in second.messages] == ["system", "user", "assistant"]


def test_csv_reads_quoted_multiline_cells_with_start_lines():
    result = read_dataset(FIXTURES / "qa.csv")
    assert result.format == "csv" and result.problems == []
    first, second = result.conversations
    assert roles_and_texts(first) == [
        ("user", "How do I book a room?"),
        ("assistant", "Use the calendar, then pick a room."),
    ]
    assert roles_and_texts(second) == [
        ("system", "Be brief."),
        ("user", "Where is the printer?"),
        ("assistant", "Second floor,\nnext to the kitchen."),
    ]
    assert [c.meta["line"] for c in result.conversations] == [2, 3]
    assert without_location(second.meta) == {"topic": "office"}


def test_csv_custom_columns_and_missing_column(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("q,a\nWhat?,That.\n", encoding="utf-8")
    result = read_dataset(path, question_column="q", answer_column="a")
    assert roles_and_texts(result.conversations[0]) == [("user", "What?"), ("assistant", "That.")]

    default = read_dataset(path)
    assert default.conversations == []
    assert {(p.line, p.field) for p in default.problems} == {(1, "question"), (1, "answer")}
    assert "--question-column" in default.problems[0].message


def test_csv_ragged_row_is_a_problem(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nWhat?,That.\nOne cell only\n", encoding="utf-8")
    result = read_dataset(path)
    assert len(result.conversations) == 1
    assert [(p.line, p.field) for p in result.problems] == [(3, "row")]


def test_json_array_syntax_error_reports_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": "c" "output": "d"}\n]\n')
    result = read_dataset(path)
    assert len(result.conversations) == 1
    assert [(p.line, p.field) for p in result.problems] == [(3, "json")]


def test_pretty_printed_single_object_gives_one_clear_problem(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}, indent=2))
    result = read_dataset(path, "openai")
    [problem] = result.problems
    assert "single JSON object" in problem.message


def test_missing_fields_in_flat_formats(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "only"}\n{"instruction": 3, "output": "x", "input": null}\n')
    result = read_dataset(path, "alpaca")
    assert result.conversations == []
    assert [(p.line, p.field) for p in result.problems] == [(1, "output"), (2, "instruction")]


def test_reserved_meta_key_is_reported(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"file": "handbook.pdf", "prompt": "q", "completion": "a"}\n')
    result = read_dataset(path)
    assert [(p.line, p.field) for p in result.problems] == [(1, "file")]


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.jsonl")


def test_empty_file_is_a_problem(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    result = read_dataset(path)
    assert result.conversations == []
    assert [(p.line, p.field) for p in result.problems] == [(1, "file")]
    assert "empty" in result.problems[0].message


def test_non_utf8_file_is_a_problem_on_its_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n')
    result = read_dataset(path, "prompt_completion")
    assert [(p.line, p.field) for p in result.problems] == [(2, "file")]
    assert "UTF-8" in result.problems[0].message


def test_unknown_format_name_is_rejected(tmp_path):
    with pytest.raises(DataError, match="unknown format 'yaml'"):
        read_dataset(FIXTURES / "openai.jsonl", "yaml")


# ---------------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openai.jsonl", "openai"),
        ("alpaca.json", "alpaca"),
        ("sharegpt.json", "sharegpt"),
        ("prompt_completion.jsonl", "prompt_completion"),
        ("qa.csv", "csv"),
    ],
)
def test_detect_format(name, expected):
    assert detect_format(FIXTURES / name) == expected


def test_detect_skips_a_broken_first_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"messages": [\n{"prompt": "q", "completion": "a"}\n')
    assert detect_format(path) == "prompt_completion"


def test_detect_unknown_names_the_keys_and_the_option(tmp_path):
    path = tmp_path / "mystery.jsonl"
    path.write_text('{"question": "q", "reply": "a"}\n')
    with pytest.raises(DataError) as caught:
        detect_format(path)
    message = str(caught.value)
    assert str(path) in message and "question, reply" in message and "--format" in message
    with pytest.raises(DataError, match="question, reply"):
        read_dataset(path)


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("source", "to", "out_name"),
    [
        ("openai.jsonl", "openai", "out.jsonl"),
        ("openai.jsonl", "sharegpt", "out.json"),
        ("openai.jsonl", "sharegpt", "out.jsonl"),
        ("sharegpt.json", "openai", "out.jsonl"),
        ("alpaca.json", "alpaca", "out.json"),
        ("alpaca.json", "alpaca", "out.jsonl"),
        ("alpaca.json", "prompt_completion", "out.jsonl"),
        ("prompt_completion.jsonl", "alpaca", "out.json"),
        ("qa.csv", "openai", "out.jsonl"),
    ],
)
def test_round_trip_keeps_messages_weights_and_meta(tmp_path, source, to, out_name):
    original = read_dataset(FIXTURES / source).conversations
    out = tmp_path / out_name
    assert write_dataset(original, out, to) == len(original)
    again = read_dataset(out, to)
    assert again.problems == []
    assert [c.messages for c in again.conversations] == [c.messages for c in original]
    assert [without_location(c.meta) for c in again.conversations] == [without_location(c.meta) for c in original]


def test_written_json_is_utf8_and_an_array_for_json_suffix(tmp_path):
    out = tmp_path / "out.json"
    write_dataset(read_dataset(FIXTURES / "openai.jsonl").conversations, out, "sharegpt")
    text = out.read_text(encoding="utf-8")
    assert "Où est la cantine ?" in text  # ensure_ascii=False
    records = json.loads(text)
    assert records[0]["conversations"][0] == {"from": "system", "value": "You are the HR assistant."}
    assert "line" not in records[0] and "file" not in records[0]


def test_multi_turn_to_alpaca_is_refused_naming_each_conversation(tmp_path):
    conversations = read_dataset(FIXTURES / "openai.jsonl").conversations
    out = tmp_path / "out.json"
    with pytest.raises(DataError) as caught:
        write_dataset(conversations, out, "alpaca")
    message = str(caught.value)
    assert f"{FIXTURES / 'openai.jsonl'}:2:" in message  # the only multi-turn conversation
    assert ":1:" not in message and ":4:" not in message
    assert "openai or sharegpt" in message
    assert not out.exists()


def test_failed_write_leaves_existing_file_untouched_and_no_temp_files(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous content\n")
    two_turns = Conversation([Message("user", "q"), Message("assistant", "a"), Message("user", "q2"),
                              Message("assistant", "a2")])
    one_turn = Conversation([Message("user", "q"), Message("assistant", "a")])
    with pytest.raises(DataError, match="conversation #2"):
        write_dataset([one_turn, two_turns], out, "prompt_completion")
    assert out.read_text() == "previous content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_atomic_write_interrupted_mid_way_leaves_no_partial_file(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")

    def chunks():
        yield "first line\n"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(out, chunks())
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_write_refuses_unknown_target_format(tmp_path):
    assert "csv" in FORMATS
    with pytest.raises(DataError, match="cannot write format 'csv'"):
        write_dataset([], tmp_path / "x.csv", "csv")


def test_read_jsonl_keeps_line_separators_inside_strings_and_names_a_damaged_line(tmp_path):
    from annotune.dataset.files import read_jsonl

    rows = [{"id": 1, "answer": "first\u2028second"}, {"id": 2, "answer": "plain"}]
    good = tmp_path / "answers.jsonl"
    good.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_jsonl(good) == rows
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{"id": \n')
    with pytest.raises(DataError, match=rf"{bad}:2:json: invalid JSON"):
        read_jsonl(bad)
