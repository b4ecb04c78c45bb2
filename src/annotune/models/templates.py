"""Chat templates and the conversation -> (input ids, loss targets) encoding used for training.

The loss covers assistant turns only, including the end-of-turn token after each one, so a tuned model learns to
stop. Assistant spans are found by rendering the template on growing prefixes of the conversation and mapping the
character spans to tokens; this works for any template whose rendering of a prefix is a prefix of the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from annotune.conversation import Conversation
from annotune.errors import DataError, ModelLoadError

IGNORE = -100

# For base models that ship no chat template (Pythia, OpenLLaMA, Falcon base ...). Plain-text markers that any
# tokenizer can encode; each assistant turn ends with the EOS token, which is what generation stops on.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}### User:\n{{ message['content'] }}\n\n"
    "{% else %}### Assistant:\n{{ message['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def ensure_chat_template(tokenizer, template: str | None = None) -> str:
    """Give ``tokenizer`` a chat template: ``template`` if given, its own if it has one, else the default."""
    if template:
        tokenizer.chat_template = template
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.eos_token is None:
        raise ModelLoadError("the tokenizer has no EOS token, so a tuned model could not learn to stop")
    return tokenizer.chat_template


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


@dataclass
class Encoded:
    input_ids: list[int]
    targets: list[int]  # targets[t] is the id the model must predict at position t, or IGNORE

    @property
    def supervised(self) -> int:
        return sum(1 for t in self.targets if t != IGNORE)


def _assistant_spans(tokenizer, conv: Conversation, text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of each trained assistant turn, end-of-turn markup included."""
    messages = conv.as_template_input()
    spans = []
    for i in range(len(messages)):
        if not conv.trains_on(i):
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1])
        if not (text.startswith(before) and text.startswith(through)):
            raise DataError(
                f"{conv.location()}: the chat template renders this conversation differently from its prefixes, so "
                "assistant turns cannot be located; pass --chat-template with a template that renders turns "
                "in order"
            )
        spans.append((len(before), len(through)))
    return spans


def encode(tokenizer, conv: Conversation) -> Encoded:
    """Tokenise one conversation with its template and mark the tokens the loss covers."""
    text = render(tokenizer, conv.as_template_input())
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    spans = _assistant_spans(tokenizer, conv, text)
    supervised = [any(s <= start < e for s, e in spans) and end > start for start, end in offsets]
    targets = [ids[t + 1] if supervised[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
    return Encoded(list(ids), targets)


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation prefix followed by the assistant generation prompt."""
    return tokenizer(render(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the token that closes an assistant turn in this template (e.g. <|im_end|>, <|eot_id|>)."""
    ids = {tokenizer.eos_token_id}
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "MARK"}]
    text = render(tokenizer, probe)
    tail = text[text.rfind("MARK") + len("MARK"):]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    special = set(getattr(tokenizer, "all_special_ids", []))
    if tail_ids and tail_ids[0] in special:
        ids.add(tail_ids[0])
    return sorted(i for i in ids if i is not None)


def conversation_token_counter(model_ref: str) -> Callable[[Conversation], int]:
    """A function giving each conversation's length in tokens under ``model_ref``'s tokenizer and template."""
    from annotune.generation.loading import describe

    tokenizer = describe(model_ref).tokenizer
    return lambda conv: len(tokenizer(render(tokenizer, conv.as_template_input()), add_special_tokens=False)["input_ids"])
