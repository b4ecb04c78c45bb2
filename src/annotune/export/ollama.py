"""The Ollama Modelfile: the run's Jinja chat template translated into Ollama's Go template, its default system
prompt and one stop parameter per stop token.

The translation does not parse Jinja. It renders the run's template on probe conversations (as training finds
the assistant turns) and reads off what it puts around each role's message, what comes before the first message
(a BOS token), what it inserts when a conversation has no system message (SmolLM's default system prompt) and the
generation prompt. The Go template rebuilds exactly that, and the result is checked by rendering both on
conversations of every shape: a template that is not "one wrapper per role" is refused rather than guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from annotune.errors import ExportError
from annotune.models.templates import render

ROLES = ("system", "user", "assistant")
_MARKS = {"system": "\x01SYS\x01", "user": "\x01USR\x01", "assistant": "\x01AST\x01"}


@dataclass(frozen=True)
class Layout:
    """What a per-role chat template writes, as literal text around each message's content."""

    header: str  # before the first message (e.g. the BOS token)
    wrappers: dict[str, tuple[str, str]]  # role -> (before content, after content)
    implicit_system: str  # written before the first message when it is not a system message
    generation: str  # the generation prompt, after the last message when that is not the assistant's

    def render(self, messages: list[dict]) -> str:
        """What the Go template writes for ``messages`` (the reference the translation is checked against)."""
        text = self.header
        if messages and messages[0]["role"] != "system":
            text += self.implicit_system
        for message in messages:
            before, after = self.wrappers[message["role"]]
            text += before + message["content"] + after
        if messages and messages[-1]["role"] != "assistant":
            text += self.generation
        return text


def _probe(number: int, role: str) -> dict:
    return {"role": role, "content": f"{_MARKS[role]}{number}"}


def _render(tokenizer, messages: list[dict]) -> str:
    return render(tokenizer, messages) if messages else _render_empty(tokenizer)


def _chunk(tokenizer, before: list[dict], message: dict) -> str:
    short, long = _render(tokenizer, before), render(tokenizer, [*before, message])
    if not long.startswith(short):
        raise ExportError("the chat template renders a conversation differently from its prefixes")
    return long[len(short):]


def _wrapper(chunk: str, message: dict) -> tuple[str, str]:
    if chunk.count(message["content"]) != 1:
        raise ExportError(f"the chat template does not write a {message['role']} message once, as it is")
    before, _, after = chunk.partition(message["content"])
    return before, after


def read_layout(tokenizer) -> Layout:
    """Read the template's layout off probe renderings, then check it reproduces the template (else refuse)."""
    from jinja2 import TemplateError

    try:
        layout = _read(tokenizer)
    except (ExportError, TemplateError) as exc:
        raise ExportError(f"cannot translate the run's chat template into Ollama's template language ({exc}); "
                          "write the TEMPLATE of the Modelfile by hand") from None
    for messages in _shapes():
        expected = render(tokenizer, messages, add_generation_prompt=True)
        if layout.render(messages) != expected:
            raise ExportError("cannot translate the run's chat template into Ollama's template language (it is not "
                              "one wrapper per role); write the TEMPLATE of the Modelfile by hand")
    return layout


def _read(tokenizer) -> Layout:
    system, user, assistant, user2 = (_probe(1, "system"), _probe(2, "user"), _probe(3, "assistant"),
                                      _probe(4, "user"))
    header = _render_empty(tokenizer)
    conversation = [system, user, assistant, user2]
    wrappers = {}
    for i, message in enumerate(conversation[:3]):
        wrappers[message["role"]] = _wrapper(_chunk(tokenizer, conversation[:i], message), message)
    if _wrapper(_chunk(tokenizer, conversation[:3], user2), user2) != wrappers["user"]:
        raise ExportError("the template writes later user messages differently from the first")
    alone = render(tokenizer, [user])
    before, after = wrappers["user"]
    if not (alone.startswith(header) and alone.endswith(before + user["content"] + after)):
        raise ExportError("the template writes a conversation without a system message in an unexpected way")
    implicit = alone[len(header):len(alone) - len(before + user["content"] + after)]
    full = render(tokenizer, conversation)
    generation = render(tokenizer, conversation, add_generation_prompt=True)[len(full):]
    return Layout(header, wrappers, implicit, generation)


def _render_empty(tokenizer) -> str:
    """The template on no messages (what it writes before any), which apply_chat_template refuses to render;
    "" for a template that cannot render none (the check of the whole layout then decides)."""
    from jinja2 import TemplateError
    from transformers.utils.chat_template_utils import render_jinja_template

    try:
        rendered, _ = render_jinja_template([[]], chat_template=tokenizer.chat_template,
                                            **tokenizer.special_tokens_map)
    except TemplateError:
        return ""
    return rendered[0]


def _shapes() -> list[list[dict]]:
    turns = [_probe(2, "user"), _probe(3, "assistant"), _probe(4, "user"), _probe(5, "assistant"),
             _probe(6, "user")]
    return [[_probe(1, "system"), *turns[:n]] for n in (1, 3, 5)] + [turns[:n] for n in (1, 3, 5)]


def _literal(text: str) -> str:
    """A Go template action that prints ``text`` (a Go string constant; JSON's escapes are Go's)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def go_template(layout: Layout, drop_bos: str | None = None) -> str:
    """The layout as an Ollama TEMPLATE. ``drop_bos``: a BOS token the runtime adds itself, left out here."""
    header = layout.header
    if drop_bos and header.startswith(drop_bos):
        header = header[len(drop_bos):]
    lines = [_literal(header)]
    if layout.implicit_system:
        lines.append('{{- if .Messages }}{{ if ne (index .Messages 0).Role "system" }}'
                     f'{_literal(layout.implicit_system)}{{{{ end }}}}{{{{ end }}}}')
    lines.append("{{- range $i, $m := .Messages }}")
    for n, role in enumerate(ROLES):
        before, after = layout.wrappers[role]
        keyword = "if" if n == 0 else "else if"
        lines.append(f'{{{{- {keyword} eq $m.Role "{role}" }}}}{_literal(before)}{{{{ $m.Content }}}}{_literal(after)}')
    lines.append("{{- end }}")
    lines.append('{{- if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role "assistant") }}'
                 f'{_literal(layout.generation)}{{{{ end }}}}')
    lines.append("{{- end }}")
    return "\n".join(line for line in lines if line)


def modelfile(template: str, system: str | None, stops: list[str], gguf_name: str = "model.gguf") -> str:
    """The Modelfile text: FROM, TEMPLATE, SYSTEM (when the run has one) and one PARAMETER stop per stop token."""
    for text, what in ((template, "template"), (system or "", "system prompt")):
        if '"""' in text:
            raise ExportError(f'the run\'s {what} contains """, which a Modelfile cannot quote')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    return "\n".join(lines) + "\n"
