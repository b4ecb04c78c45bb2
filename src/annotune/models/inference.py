"""Loading a run folder or any model reference for generation, and generating answers.

A run folder brings its own tokenizer and chat template, so the prompt format at inference is always the one used
in training. Any other reference (hub id, folder, GGUF, embedded default) is loaded as a base model, so base and
tuned models are compared through the same code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from annotune.models.loading import load_model, load_tokenizer, resolve_model
from annotune.models.templates import ensure_chat_template, prompt_ids, stop_token_ids
from annotune.runs import is_run_dir, read_run_info


@dataclass
class ChatModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    stop_ids: list[int] = field(default_factory=list)
    device: str = "cpu"
    system: str | None = None  # the system prompt shared by all training chats, used when a chat gives none

    def with_system(self, messages: list[dict]) -> list[dict]:
        if self.system and (not messages or messages[0]["role"] != "system"):
            return [{"role": "system", "content": self.system}, *messages]
        return messages


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer_for(ref: str):
    """The tokenizer (with chat template) that ``ref`` would use; cheap compared with loading weights."""
    path = Path(ref).expanduser()
    if is_run_dir(path):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path / "tokenizer")
    tokenizer = load_tokenizer(resolve_model(ref))
    ensure_chat_template(tokenizer)
    return tokenizer


def load_chat_model(ref: str, device: str | None = None) -> ChatModel:
    """Load a run folder (base + adapter merged, or full weights) or a plain model reference."""
    device = device or _device()
    path = Path(ref).expanduser()
    if not is_run_dir(path):
        model_ref = resolve_model(ref)
        tokenizer = load_tokenizer(model_ref)
        ensure_chat_template(tokenizer)
        model = load_model(model_ref, device=device).eval()
        return ChatModel(model, tokenizer, ref, stop_token_ids(tokenizer), device)
    from transformers import AutoTokenizer

    info = read_run_info(path)
    if info.get("status") != "complete":
        from annotune.errors import RunDirError

        raise RunDirError(f"{path} has not finished training (status: {info.get('status')}); "
                          f"finish it with `annotune train --resume --out {path}`")
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    if (path / "model").is_dir():
        model = load_model(resolve_model(str(path / "model")), device=device)
    else:
        from peft import PeftModel

        base = load_model(resolve_model(info["base_model"]["ref"]), device=device)
        model = PeftModel.from_pretrained(base, path / "adapter").merge_and_unload()
    return ChatModel(model.eval(), tokenizer, str(path), info.get("stop_token_ids") or stop_token_ids(tokenizer),
                     device, info.get("default_system"))


def _generation_kwargs(cm: ChatModel, max_new_tokens: int, temperature: float) -> dict:
    kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=cm.stop_ids, pad_token_id=cm.tokenizer.pad_token_id)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


@torch.no_grad()
def generate(cm: ChatModel, conversations: list[list[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
             batch_size: int = 16) -> list[str]:
    """Answer each conversation (a list of messages ending with a user turn); batched, left-padded."""
    answers: list[str] = []
    pad = cm.tokenizer.pad_token_id
    for start in range(0, len(conversations), batch_size):
        prompts = [prompt_ids(cm.tokenizer, cm.with_system(msgs)) for msgs in conversations[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=cm.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=cm.device)
        out = cm.model.generate(input_ids=ids, attention_mask=mask,
                                **_generation_kwargs(cm, max_new_tokens, temperature))
        for row in out[:, width:]:
            answers.append(cm.tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


def stream(cm: ChatModel, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0) -> Iterator[str]:
    """Yield the answer's text piece by piece as it is generated."""
    from transformers import TextIteratorStreamer

    ids = torch.tensor([prompt_ids(cm.tokenizer, cm.with_system(messages))], device=cm.device)
    streamer = TextIteratorStreamer(cm.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                  **_generation_kwargs(cm, max_new_tokens, temperature))
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                cm.model.generate(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the caller's thread
            failed.append(exc)
            streamer.end()  # otherwise the caller waits for text that never comes

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if failed:
        raise failed[0]
