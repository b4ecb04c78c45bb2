"""Using a tuned (or base) model: interactive chat with streaming, and batched answers for a JSONL file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from annotune.errors import DataError
from annotune.generation.config import OFFLINE_BATCH, GenerationConfig
from annotune.generation.engine import ContextLengthError


def chat(ref: str, cfg: GenerationConfig, prompt: str | None = None, system: str | None = None,
         routing: bool = True) -> int:
    from annotune.generation.loading import load_engine

    print(f"Loading {ref} ...", file=sys.stderr)
    with load_engine(ref, routing=routing) as engine:
        return _chat(engine, cfg, prompt, system)


def _chat(engine, cfg: GenerationConfig, prompt: str | None, system: str | None) -> int:
    name = next(iter(engine.models))
    messages = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        _answer(engine, name, messages + [{"role": "user", "content": prompt}], cfg)
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
        try:
            answer = _answer(engine, name, [*messages, {"role": "user", "content": text}], cfg, prefix="assistant> ")
        except ContextLengthError as exc:
            print(f"error: {exc}; /reset starts a new conversation", file=sys.stderr)
            continue
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]


def _answer(engine, name: str, messages: list[dict], cfg: GenerationConfig, prefix: str = "") -> str:
    stream = engine.stream(name, messages, cfg)  # a prompt that does not fit is refused before anything prints
    sys.stdout.write(prefix)
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if stream.result.finish_reason == "length":
        print(f"(cut at {cfg.max_new_tokens} tokens; --max-new-tokens allows more)", file=sys.stderr)
    if stream.result.route == "base":
        print("(answered by the base model: unlike the run's training questions; --no-routing answers with the run)",
              file=sys.stderr)
    return stream.result.text


def read_prompts(path: str) -> list[tuple[int, dict, list[dict]]]:
    """(line, record, messages) for each record; every bad line is reported as file:line:field.

    The file is read by the datasets' own reader (JSONL or a JSON array; a byte-order mark and U+2028 inside
    strings are fine), so what `data validate` accepts, `generate` reads the same way.
    """
    from annotune.dataset.files import json_records, read_text

    file = Path(path)
    if file.is_dir():
        raise DataError(f"{file}: is a folder, not an input file; pass the JSONL file inside it")
    if not file.is_file():
        raise DataError(f"input file not found: {file}")
    text, problems = read_text(file)
    records = []
    if text is not None:
        records, problems = json_records(str(file), text)
    found = [(p.line, str(p)) for p in problems]
    rows = []
    for number, record in records:
        messages = _prompt_messages(record)
        if isinstance(messages, str):
            found.append((number, f"{file}:{number}:{messages}"))
        else:
            rows.append((number, record, messages))
    if found:
        raise DataError("\n".join(text for _, text in sorted(found, key=lambda item: item[0])))
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


def generate_file(ref: str, input_path: str, output_path: str, cfg: GenerationConfig,
                  batch_size: int = OFFLINE_BATCH, routing: bool = True, progress: bool = True) -> int:
    """Answer every prompt of ``input_path``; each output line is its input line plus the answer and its counts."""
    from tqdm.auto import tqdm

    from annotune.dataset.files import write_atomically
    from annotune.generation.loading import load_engine

    rows = read_prompts(input_path)  # refuse bad input before loading the model
    out = Path(output_path)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; give a file name to write the answers to")
    engine = load_engine(ref, max_batch=batch_size, routing=routing)
    name = next(iter(engine.models))
    try:
        with tqdm(total=len(rows), desc="generating", unit="prompt", file=sys.stderr, disable=not progress) as bar:
            results = engine.generate(name, [msgs for _, _, msgs in rows], cfg, on_result=lambda i, r: bar.update())
    except ContextLengthError as exc:
        raise DataError(f"{input_path}:{rows[exc.index][0]}: {exc}") from None
    finally:
        engine.close()
    def line(record: dict, r) -> str:
        routed = {"route": r.route} if r.route else {}
        return json.dumps({**record, "answer": r.text, "finish_reason": r.finish_reason, **routed,
                           "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}},
                          ensure_ascii=False) + "\n"

    write_atomically(out, (line(record, r) for (_, record, _), r in zip(rows, results)))
    return len(rows)
