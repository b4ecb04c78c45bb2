"""The real `annotune` command: train from YAML + flags, generate, chat, and clear errors for user mistakes."""

import json

import pytest
import yaml
from conftest import run_cli

from annotune.config import TrainConfig


@pytest.fixture(scope="module")
def tiny_run(tiny, tmp_path_factory):
    """A short LoRA run on the tiny model, trained once through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"},
                                                     {"role": "assistant", "content": f"Answer {i}."}]}) + "\n"
                            for i in range(6)))
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({"epochs": 5, "lora_r": 2, "lora_alpha": 4, "batch_size": 3, "lr": 0.5}))
    result = run_cli("train", str(data), "--model", str(tiny), "--config", str(config), "--out", str(root / "run"),
                     "--lr", "0.01", "--val-size", "0", "--no-progress", env={"ANNOTUNE_HOME": str(root / "home")})
    assert result.returncode == 0, result.stderr
    assert "Chat with it: annotune chat" in result.stdout
    return root / "run"


def test_yaml_config_is_overridden_by_flags(tiny_run):
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert saved["epochs"] == 5 and saved["lora_r"] == 2  # from the YAML file
    assert saved["lr"] == 0.01  # the flag wins over the YAML's 0.5
    assert len((tiny_run / "metrics.jsonl").read_text().splitlines()) == 10  # 2 steps x 5 epochs


def test_generate_answers_each_line_of_a_file(tiny_run, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Question 1?", "id": "a"}) + "\n"
                       + json.dumps({"messages": [{"role": "user", "content": "Question 2?"}]}) + "\n")
    out = tmp_path / "answers.jsonl"
    result = run_cli("generate", str(tiny_run), "--input", str(prompts), "--output", str(out), "--max-new-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert "generating:" in result.stderr  # the progress bar
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["a", None] and all(isinstance(r["answer"], str) for r in rows)
    assert rows[1]["messages"][0]["content"] == "Question 2?"


def test_generate_reads_what_data_validate_accepts(tiny_run, tmp_path):
    # a byte-order mark (Excel, Windows editors) and U+2028 inside a string, as `annotune ingest` can write
    prompts = tmp_path / "bom.jsonl"
    prompts.write_text("\ufeff" + json.dumps({"prompt": "Line one\u2028line two?"}, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    result = run_cli("generate", str(tiny_run), "--input", str(prompts), "--output", str(out), "--max-new-tokens", "2",
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["prompt"] == "Line one\u2028line two?"
    assert "generating:" not in result.stderr


def test_generate_reports_every_bad_line_and_writes_nothing(tiny_run, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{oops\n{"messages": [{"role": "bot", "content": "x"}]}\n{"id": 3}\n')
    out = tmp_path / "answers.jsonl"
    result = run_cli("generate", str(tiny_run), "--input", str(prompts), "--output", str(out))
    assert result.returncode == 1
    for expected in ("prompts.jsonl:2:json: invalid JSON", "prompts.jsonl:3:messages[0]", "prompts.jsonl:4:prompt"):
        assert expected in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_chat_one_prompt_with_run_and_with_base_model(tiny_run, tiny):
    for ref in (str(tiny_run), str(tiny)):
        result = run_cli("chat", ref, "--prompt", "Question 3?", "--max-new-tokens", "5")
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith("\n")


def test_chat_interactive_session_reads_stdin(tiny_run):
    import subprocess

    from conftest import BIN

    result = subprocess.run([str(BIN / "annotune"), "chat", str(tiny_run), "--max-new-tokens", "4"],
                            input="Question 1?\n/exit\n", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "assistant> " in result.stdout


def test_user_mistakes_get_one_line_errors_not_tracebacks(tiny, tmp_path):
    cases = [
        (["train", str(tmp_path / "missing.jsonl"), "--model", str(tiny)], "no such file"),
        (["train", "--model", "no-such-org/no-such-model", str(_one_chat(tmp_path)), "--val-size", "0"], "hf download"),
        (["train", str(_one_chat(tmp_path)), "--model", str(tiny), "--val-size", "1"], "leaving none to train on"),
        (["train", str(_one_chat(tmp_path)), "--model", str(tiny), "--val-size", "1.5"], "pass a whole number"),
        (["train", str(_one_chat(tmp_path)), "--model", str(tiny), "--val-size", "0", "--chat-template", "no.jinja"],
         "--chat-template: no.jinja: no such file; check the path"),
        (["train", str(_one_chat(tmp_path)), "--model", str(tiny), "--lr", "-1"], "lr"),
        (["train", str(_one_chat(tmp_path)), "--config", str(tmp_path / "nope.yaml")],
         f"--config: {tmp_path / 'nope.yaml'}: no such file"),
        (["chat", str(tmp_path), "--prompt", "hi"], "config.json"),
    ]
    for args, expected in cases:
        result = run_cli(*args, "--no-progress" if args[0] == "train" else "--max-new-tokens=1", cwd=tmp_path)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr


def _one_chat(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}))
    return path


def test_python_dash_m_is_the_same_command_line(tmp_path):
    script, module = run_cli("serve", "--help"), run_cli("serve", "--help", module=True)
    assert module.returncode == script.returncode == 0
    assert module.stdout == script.stdout
    failed = run_cli("train", str(tmp_path / "missing.jsonl"), "--no-progress", module=True)
    assert failed.returncode == run_cli("train", str(tmp_path / "missing.jsonl"), "--no-progress").returncode == 1
    assert "no such file" in failed.stderr and "Traceback" not in failed.stderr


def test_help_shows_each_option_documented_once():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for name, field in TrainConfig.model_fields.items():
        if name != "data":
            assert "--" + name.replace("_", "-") in result.stdout
    assert TrainConfig.model_fields["lora_r"].description in result.stdout


def test_bad_files_and_options_are_refused_before_anything_is_written(tiny, tiny_run, tmp_path):
    data = _one_chat(tmp_path)
    binary = tmp_path / "bin.md"
    binary.write_bytes(b"# title\n\xff\xfe\x00\x01")
    bad_template = tmp_path / "bad.jinja"
    bad_template.write_text("{% for m in messages %}\n{{ m.content }\n")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf file")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"messages": [}\nnot json either\n')
    train = ["train", str(data), "--model", str(tiny), "--val-size", "0", "--no-progress"]
    cases = [
        (["generate", str(tiny_run), "--input", str(prompts), "--output", "o.jsonl", "--batch-size", "0"],
         "argument --batch-size: must be at least 1, got 0"),
        (["chat", str(tiny_run), "--prompt", "hi", "--max-new-tokens", "0"],
         "max_new_tokens (--max-new-tokens): Input should be greater than or equal to 1"),
        (["chat", str(tiny_run), "--prompt", "hi", "--temperature", "-1"], "temperature (--temperature): Input should be greater than or equal to 0"),
        (["quickstart", "--out", "q", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["generate", str(tiny_run), "--input", str(prompts), "--output", str(tmp_path)],
         f"error: {tmp_path}: is a folder; give a file name to write the answers to"),
        (["generate", str(tiny_run), "--input", str(tmp_path), "--output", "o.jsonl"], "is a folder, not an input file"),
        (["generate", str(tiny_run), "--input", str(binary), "--output", "o.jsonl"],
         f"error: {binary}:2:file: not valid UTF-8 (byte 8: invalid start byte); re-save the file as UTF-8"),
        ([*train, "--config", str(binary)], f"error: --config: {binary}: not UTF-8 text (byte 8); save it as UTF-8"),
        ([*train, "--config", str(tmp_path)],
         f"--config: {tmp_path}: is a folder, not a file; pass the file inside it"),
        ([*train, "--chat-template", str(bad_template)],
         f"error: --chat-template: {bad_template}:2: template syntax error: unexpected '}}'"),
        ([*train, "--chat-template", str(binary)], f"--chat-template: {binary}: not UTF-8 text (byte 8)"),
        (["train", str(data), "--model", str(not_gguf), "--val-size", "0"], "not a GGUF file"),
        (["train", str(data), "--model", str(prompts), "--val-size", "0"], "is a file, not a model"),
        (["train", str(data), "--model", str(tiny_run), "--val-size", "0"], "use it with `annotune chat`"),
        ([*train, "--out", "r", "--resume", "--overwrite"], "pass one of them"),
        (["data", "validate", str(bad_json)], f"error: {bad_json}:1:json: invalid JSON"),
        (["train", str(bad_json), "--model", str(tiny)], f"error: {bad_json}:1:json: invalid JSON"),
    ]
    for args, expected in cases:
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
    leftovers = {p.name for p in tmp_path.iterdir()} - {"one.jsonl", "bin.md", "bad.jinja", "model.gguf",
                                                        "prompts.jsonl", "bad.jsonl"}
    assert not leftovers


def test_a_run_whose_setup_fails_leaves_no_folder_and_can_be_run_again(tiny, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(_one_chat(tmp_path)), "--model", str(tiny), "--val-size", "0", "--out", str(out),
            "--no-progress", "--epochs", "1"]
    failed = run_cli(*args, "--lora-targets", "no_such_module")
    assert failed.returncode != 0 and "no_such_module" in failed.stderr and "Traceback" not in failed.stderr
    assert not out.exists()
    assert run_cli(*args).returncode == 0 and (out / "adapter").is_dir()
