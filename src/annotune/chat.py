"""Using a tuned (or base) model: interactive chat with streaming, and batched answers for a JSONL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from annotune.errors import DataError


def chat(ref: str, prompt: str | None = None, system: str | None = None, max_new_tokens: int = 256,
         temperature: float = 0.0) -> int:
    from annotune.models.inference import load_chat_model, stream

    print(f"Loading {ref} ...", file=sys.stderr)
    cm = load_chat_model(ref)
    messages = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        _answer(cm, messages + [{"role": "user", "content": prompt}], stream, max_new_tokens, temperature)
        return 0
    print("Type a message; /reset starts over, /exit or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return 0
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            messages = messages[:1] if system else []
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        sys.stdout.write("assistant> ")
        messages.append({"role": "assistant", "content": _answer(cm, messages, stream, max_new_tokens, temperature)})


def _answer(cm, messages, stream, max_new_tokens, temperature) -> str:
    pieces = []
    for piece in stream(cm, messages, max_new_tokens=max_new_tokens, temperature=temperature):
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(pieces).strip()


def read_prompts(path: str) -> list[tuple[dict, list[dict]]]:
    """(record, messages) for each line; every bad line is reported as file:line:field."""
    file = Path(path)
    if file.is_dir():
        raise DataError(f"{file}: is a folder, not an input file; pass the JSONL file inside it")
    if not file.is_file():
        raise DataError(f"input file not found: {file}")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{file}:{line}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{file}:{number}: not valid JSON ({exc.msg}, column {exc.colno})")
            continue
        messages = _prompt_messages(record)
        if isinstance(messages, str):
            problems.append(f"{file}:{number}:{messages}")
        else:
            rows.append((record, messages))
    if problems:
        raise DataError("\n".join(problems))
    if not rows:
        raise DataError(f"{file}: no prompts found; each line needs `messages` or `prompt`")
    return rows


def _prompt_messages(record) -> list[dict] | str:
    """The conversation to answer, or a 'field: problem' string."""
    if not isinstance(record, dict):
        return "line: expected a JSON object with `messages` or `prompt`"
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            return "messages: expected a non-empty list of {role, content}"
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                return f"messages[{i}]: expected {{role: system|user|assistant, content: text}}"
        if msgs[-1]["role"] != "user":
            return f"messages[{len(msgs) - 1}].role: the last message must be from the user"
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    if isinstance(record.get("prompt"), str) and record["prompt"].strip():
        return [{"role": "user", "content": record["prompt"]}]
    return "prompt: missing; give `messages` (a list) or `prompt` (text)"


def generate_file(ref: str, input_path: str, output_path: str, max_new_tokens: int = 128, temperature: float = 0.0,
                  batch_size: int = 16) -> int:
    from tqdm.auto import tqdm

    from annotune.dataset.files import write_atomically
    from annotune.models.inference import generate, load_chat_model

    rows = read_prompts(input_path)  # refuse bad input before loading the model
    out = Path(output_path)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; give a file name to write the answers to")
    cm = load_chat_model(ref)
    answers: list[str] = []
    with tqdm(total=len(rows), desc="generating", unit="prompt", file=sys.stderr) as bar:
        for start in range(0, len(rows), batch_size):
            chunk = [msgs for _, msgs in rows[start:start + batch_size]]
            answers.extend(generate(cm, chunk, max_new_tokens, temperature, batch_size))
            bar.update(len(chunk))
    write_atomically(out, (json.dumps({**record, "answer": answer}, ensure_ascii=False) + "\n"
                           for (record, _), answer in zip(rows, answers)))
    return len(rows)
