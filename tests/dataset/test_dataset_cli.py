"""`annotune data validate` and `annotune data convert`, driven through a real argparse parser."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest

from annotune.dataset import read_dataset
from annotune.dataset.cli import register
from annotune.errors import AnnotuneError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="annotune")
    register(parser.add_subparsers())
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_validate_clean_file_prints_stats_and_exits_0(capsys):
    assert run("validate", str(FIXTURES / "openai.jsonl")) == 0
    out = capsys.readouterr().out
    assert "openai format" in out
    assert "no problems found" in out
    assert "examples: 3" in out and "length in characters" in out


def test_validate_prints_every_problem_and_exits_1(capsys):
    assert run("validate", str(FIXTURES / "problems.jsonl")) == 1
    out = capsys.readouterr().out
    for location in ("2:json", "7:messages[2].role", "16:messages", "20:messages[1].weight"):
        assert f"{FIXTURES / 'problems.jsonl'}:{location}: " in out
    assert "18 problems found" in out and "examples: " in out


def test_validate_with_forced_format_and_csv_columns(tmp_path, capsys):
    path = tmp_path / "faq.txt"
    path.write_text("ask,reply\nq,a\n")
    assert run("validate", str(path), "--format", "csv", "--question-column", "ask", "--answer-column", "reply") == 0
    assert "csv format" in capsys.readouterr().out


def test_validate_with_model_counts_tokens(tmp_path, monkeypatch, capsys):
    requested = []

    def conversation_token_counter(model_ref):
        requested.append(model_ref)
        return lambda c: sum(len(m.content.split()) for m in c.messages)

    fake = types.ModuleType("annotune.models.templates")
    fake.conversation_token_counter = conversation_token_counter
    monkeypatch.setitem(sys.modules, "annotune.models.templates", fake)
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"messages": [{"role": "user", "content": "a b c"}, {"role": "assistant", "content": "d e"}]}) + "\n"
    )

    assert run("validate", str(path), "--model", "tiny-model", "--max-length", "4") == 1
    out = capsys.readouterr().out
    assert requested == ["tiny-model"]
    assert f"{path}:1:messages: 5 tokens, over --max-length 4; shorten it or raise --max-length" in out
    assert "length in tokens" in out

    assert run("validate", str(path), "--model", "tiny-model", "--max-length", "5") == 0


def test_validate_max_length_needs_model(tmp_path):
    with pytest.raises(AnnotuneError, match="--model"):
        run("validate", str(FIXTURES / "openai.jsonl"), "--max-length", "10")


def test_validate_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        run("validate", str(tmp_path / "missing.jsonl"))


def test_convert_writes_and_reports_count(tmp_path, capsys):
    out_path = tmp_path / "out.json"
    assert run("convert", str(FIXTURES / "openai.jsonl"), str(out_path), "--to", "sharegpt") == 0
    assert "wrote 3 conversations" in capsys.readouterr().out
    converted = read_dataset(out_path)
    assert converted.format == "sharegpt" and len(converted.conversations) == 3


def test_convert_from_csv_to_alpaca(tmp_path, capsys):
    out_path = tmp_path / "out.jsonl"
    assert run("convert", str(FIXTURES / "qa.csv"), str(out_path), "--to", "alpaca") == 0
    first = json.loads(out_path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"instruction": "How do I book a room?", "input": "",
                     "output": "Use the calendar, then pick a room.", "topic": "rooms"}


def test_convert_refuses_invalid_input_listing_every_problem(tmp_path, capsys):
    out_path = tmp_path / "out.jsonl"
    assert run("convert", str(FIXTURES / "problems.jsonl"), str(out_path), "--to", "openai") == 1
    err = capsys.readouterr().err
    assert err.count(str(FIXTURES / "problems.jsonl")) == 18
    assert "not converted" in err
    assert not out_path.exists()


def test_convert_multi_turn_to_alpaca_is_a_data_error(tmp_path):
    out_path = tmp_path / "out.json"
    with pytest.raises(DataError, match="openai.jsonl:2:"):
        run("convert", str(FIXTURES / "openai.jsonl"), str(out_path), "--to", "alpaca")
    assert not out_path.exists()


def test_convert_requires_a_known_target():
    with pytest.raises(SystemExit):
        run("convert", "in.jsonl", "out.csv", "--to", "csv")
