"""One record <-> one :class:`Conversation`, per format.

Parsers check structure only (is it an object, are the keys there, are the types right) and collect every
structural problem in the record. What the messages *mean* (roles, order, emptiness, duplicates, length)
is checked once for all formats in :mod:`annotune.dataset.validate`.

Serialisers raise :class:`LossyConversion` when a conversation cannot be written in a format without
dropping information; :func:`annotune.dataset.formats.write_dataset` collects those into one error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from annotune.conversation import Conversation, Message
from annotune.dataset.problem import Problem

# ShareGPT speaker names seen in the wild -> canonical role. Writing uses the first, classic names.
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
}
SHAREGPT_SPEAKERS = {"system": "system", "user": "human", "assistant": "gpt"}

# Keys each format reads itself; any other top-level key of a record is kept in Conversation.meta.
FORMAT_KEYS = {
    "openai": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "input", "output", "system"),
    "prompt_completion": ("prompt", "completion", "system"),
    "preference": ("prompt", "chosen", "rejected"),
}
# Meta keys that describe where a conversation was read from; never written back into a record.
LOCATION_KEYS = ("file", "line")


class LossyConversion(Exception):
    """A conversation the target format cannot hold without dropping something; the text says what."""


@dataclass
class RecordContext:
    """Where the record being parsed lives, and the list its problems go to."""

    file: str
    line: int
    problems: list[Problem]

    def problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.line, field, message))


def type_name(value: Any) -> str:
    """JSON's name for a Python value's type, as the user sees it in their file."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def record_meta(record: dict[str, Any], own_keys: tuple[str, ...], ctx: RecordContext) -> dict[str, Any]:
    """Source location plus every top-level key the format does not read itself (id, source, ...)."""
    meta: dict[str, Any] = {"file": ctx.file, "line": ctx.line}
    for key, value in record.items():
        if key in own_keys:
            continue
        if key in LOCATION_KEYS:
            # Conversation.meta reserves these for the source location, so the value would be lost.
            ctx.problem(key, f"key '{key}' is reserved for the source location; rename it (e.g. 'source_{key}')")
            continue
        meta[key] = value
    return meta


# ---------------------------------------------------------------------------------------------- parsing


def _parse_weight(item: dict[str, Any], prefix: str, ctx: RecordContext) -> tuple[int | None, bool]:
    weight = item.get("weight")
    if weight is None:
        return None, True
    if isinstance(weight, bool) or weight not in (0, 1):
        message = f"weight must be 0 or 1, got {json.dumps(weight)}; use 1 to train on this message, 0 for context"
        ctx.problem(f"{prefix}.weight", message)
        return None, False
    return int(weight), True


def _parse_message(item: Any, prefix: str, ctx: RecordContext, sharegpt: bool) -> Message | None:
    """One message object; ``None`` (with problems recorded) when its structure is wrong."""
    role_key, content_key = ("from", "value") if sharegpt else ("role", "content")
    if not isinstance(item, dict):
        shape = f'{{"{role_key}": ..., "{content_key}": ...}}'
        ctx.problem(prefix, f"expected a message object, got {type_name(item)}; write it as {shape}")
        return None
    ok = True
    role = item.get(role_key)
    if not isinstance(role, str):
        speakers = "system, human or gpt" if sharegpt else "system, user or assistant"
        got = "missing" if role is None else f"must be a string, got {type_name(role)}"
        ctx.problem(f"{prefix}.{role_key}", f"{role_key} {got}; set it to {speakers}")
        ok = False
    elif sharegpt:
        mapped = SHAREGPT_ROLES.get(role.lower())
        if mapped is None:
            accepted = ", ".join(SHAREGPT_ROLES)
            message = f"unknown speaker {role!r}; use system, human or gpt (accepted: {accepted})"
            ctx.problem(f"{prefix}.from", message)
            ok = False
        role = mapped
    content = item.get(content_key)
    if not isinstance(content, str):
        got = "missing" if content is None else f"must be a string, got {type_name(content)}"
        ctx.problem(f"{prefix}.{content_key}", f"{content_key} {got}; put the message text here as a string")
        ok = False
    weight, weight_ok = _parse_weight(item, prefix, ctx)
    if not (ok and weight_ok):
        return None
    return Message(role=role, content=content, weight=weight)


def _parse_message_list(record: dict[str, Any], fmt: str, ctx: RecordContext) -> Conversation | None:
    key = FORMAT_KEYS[fmt][0]
    meta = record_meta(record, FORMAT_KEYS[fmt], ctx)
    items = record.get(key)
    if not isinstance(items, list):
        got = "it is missing" if key not in record else f"got {type_name(items)}"
        ctx.problem(key, f"'{key}' must be a list of messages, {got}; put the messages in a JSON list")
        return None
    parsed = [_parse_message(item, f"{key}[{i}]", ctx, sharegpt=fmt == "sharegpt") for i, item in enumerate(items)]
    if any(message is None for message in parsed):
        return None
    return Conversation(messages=parsed, meta=meta)  # type: ignore[arg-type]  # None ruled out above


def parse_openai(record: dict[str, Any], ctx: RecordContext) -> Conversation | None:
    return _parse_message_list(record, "openai", ctx)


def parse_sharegpt(record: dict[str, Any], ctx: RecordContext) -> Conversation | None:
    return _parse_message_list(record, "sharegpt", ctx)


def _string_field(record: dict[str, Any], key: str, ctx: RecordContext, required: bool) -> str | None:
    """``record[key]`` when it is a string; optional keys may be missing or null (then ``""``)."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, str):
        return value
    got = "missing" if value is None else f"must be a string, got {type_name(value)}"
    ctx.problem(key, f"'{key}' {got}; fill it in with text")
    return None


def _single_turn(system: str, user: str, answer: str, meta: dict[str, Any]) -> Conversation:
    # An empty system field means "no system prompt", as most alpaca-style files write it.
    messages = [Message("system", system)] if system.strip() else []
    messages += [Message("user", user), Message("assistant", answer)]
    return Conversation(messages=messages, meta=meta)


def parse_alpaca(record: dict[str, Any], ctx: RecordContext) -> Conversation | None:
    instruction = _string_field(record, "instruction", ctx, required=True)
    extra_input = _string_field(record, "input", ctx, required=False)
    output = _string_field(record, "output", ctx, required=True)
    system = _string_field(record, "system", ctx, required=False)
    meta = record_meta(record, FORMAT_KEYS["alpaca"], ctx)
    if instruction is None or extra_input is None or output is None or system is None:
        return None
    user = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    return _single_turn(system, user, output, meta)


def parse_prompt_completion(record: dict[str, Any], ctx: RecordContext) -> Conversation | None:
    prompt = _string_field(record, "prompt", ctx, required=True)
    completion = _string_field(record, "completion", ctx, required=True)
    system = _string_field(record, "system", ctx, required=False)
    meta = record_meta(record, FORMAT_KEYS["prompt_completion"], ctx)
    if prompt is None or completion is None or system is None:
        return None
    return _single_turn(system, prompt, completion, meta)


def parse_csv_row(row: dict[str, str], ctx: RecordContext, question: str, answer: str) -> Conversation:
    """A CSV row always has string cells and its columns were checked against the header already."""
    meta = record_meta(row, (question, answer, "system"), ctx)
    return _single_turn(row.get("system", ""), row[question], row[answer], meta)


def _preference_side(record: dict[str, Any], key: str, ctx: RecordContext) -> str | None:
    """``chosen``/``rejected``: a string, or TRL's conversational form, a list of one assistant message."""
    value = record.get(key)
    if isinstance(value, str):
        return value
    if (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
            and value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str)):
        return value[0]["content"]
    got = "missing" if value is None else f"got {type_name(value)}"
    ctx.problem(key, f"'{key}' must be the answer text or [{{\"role\": \"assistant\", \"content\": ...}}], {got}")
    return None


def parse_preference(record: dict[str, Any], ctx: RecordContext) -> Conversation | None:
    """Prompt plus the chosen answer as a conversation (what SFT trains on); the rejected text goes to meta."""
    prompt = record.get("prompt")
    messages: list[Message | None]
    if isinstance(prompt, str):
        messages = [Message("user", prompt)]
    elif isinstance(prompt, list) and prompt:
        messages = [_parse_message(item, f"prompt[{i}]", ctx, sharegpt=False) for i, item in enumerate(prompt)]
    else:
        got = "missing" if prompt is None else f"got {type_name(prompt)}"
        ctx.problem("prompt", f"'prompt' must be the question text or a list of messages, {got}")
        messages = [None]
    chosen = _preference_side(record, "chosen", ctx)
    rejected = _preference_side(record, "rejected", ctx)
    meta = record_meta(record, FORMAT_KEYS["preference"], ctx)
    if chosen is None or rejected is None or any(m is None for m in messages):
        return None
    meta["rejected"] = rejected
    return Conversation(messages=[*messages, Message("assistant", chosen)], meta=meta)  # type: ignore[list-item]


PARSERS = {
    "openai": parse_openai,
    "sharegpt": parse_sharegpt,
    "alpaca": parse_alpaca,
    "prompt_completion": parse_prompt_completion,
    "preference": parse_preference,
}

# -------------------------------------------------------------------------------------------- writing


def _extra_meta(conversation: Conversation, fmt: str) -> dict[str, Any]:
    extra = {k: v for k, v in conversation.meta.items() if k not in LOCATION_KEYS}
    clashes = sorted(set(extra) & set(FORMAT_KEYS[fmt]))
    if clashes:
        raise LossyConversion(f"metadata key(s) {', '.join(clashes)} clash with {fmt} fields; rename them")
    return extra


def to_openai(conversation: Conversation) -> dict[str, Any]:
    return {"messages": [m.to_dict() for m in conversation.messages], **_extra_meta(conversation, "openai")}


def to_sharegpt(conversation: Conversation) -> dict[str, Any]:
    turns = []
    for message in conversation.messages:
        if message.role not in SHAREGPT_SPEAKERS:
            raise LossyConversion(f"role {message.role!r} has no ShareGPT speaker; use system, user or assistant")
        turn: dict[str, Any] = {"from": SHAREGPT_SPEAKERS[message.role], "value": message.content}
        if message.weight is not None:
            turn["weight"] = message.weight
        turns.append(turn)
    return {"conversations": turns, **_extra_meta(conversation, "sharegpt")}


def _single_turn_parts(conversation: Conversation, fmt: str) -> tuple[str, str, str]:
    """(system, user, assistant) of a one-exchange conversation, or why it is not one."""
    messages = list(conversation.messages)
    system = messages.pop(0).content if messages and messages[0].role == "system" else ""
    roles = [m.role for m in messages]
    if roles != ["user", "assistant"]:
        shape = ", ".join(roles) or "no messages"
        raise LossyConversion(
            f"{fmt} holds one user message and one assistant answer (after an optional system message), "
            f"this conversation has: {shape}; convert to openai or sharegpt, which keep every turn"
        )
    if messages[1].weight == 0:
        raise LossyConversion(f"the answer has weight 0, which {fmt} cannot express; drop the example instead")
    return system, messages[0].content, messages[1].content


def to_alpaca(conversation: Conversation) -> dict[str, Any]:
    system, user, answer = _single_turn_parts(conversation, "alpaca")
    # The reader joined instruction and input into one user message; they cannot be told apart again, so
    # everything goes back into `instruction` (reading it again gives the same conversation).
    record: dict[str, Any] = {"instruction": user, "input": "", "output": answer}
    if system:
        record["system"] = system
    return {**record, **_extra_meta(conversation, "alpaca")}


def to_prompt_completion(conversation: Conversation) -> dict[str, Any]:
    system, user, answer = _single_turn_parts(conversation, "prompt_completion")
    record: dict[str, Any] = {"prompt": user, "completion": answer}
    if system:
        record["system"] = system
    return {**record, **_extra_meta(conversation, "prompt_completion")}


def to_preference(conversation: Conversation) -> dict[str, Any]:
    rejected = conversation.meta.get("rejected")
    messages = conversation.messages
    if not isinstance(rejected, str) or not messages or messages[-1].role != "assistant" or len(messages) < 2:
        raise LossyConversion("preference data needs a prompt, a chosen answer (the last assistant message) "
                              "and a rejected answer (meta 'rejected'); this conversation has no rejected answer")
    rest = Conversation(messages, {k: v for k, v in conversation.meta.items() if k != "rejected"})
    return {"prompt": [m.to_dict() for m in messages[:-1]],
            "chosen": [{"role": "assistant", "content": messages[-1].content}],
            "rejected": [{"role": "assistant", "content": rejected}], **_extra_meta(rest, "preference")}


SERIALISERS = {
    "openai": to_openai,
    "alpaca": to_alpaca,
    "sharegpt": to_sharegpt,
    "prompt_completion": to_prompt_completion,
    "preference": to_preference,
}
