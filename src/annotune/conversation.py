"""The canonical data type: a conversation, i.e. an ordered list of OpenAI-style messages.

Every importer converts *to* :class:`Conversation` and every exporter converts *from* it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass
class Message:
    role: str
    content: str
    # 1 = train on this assistant message, 0 = context only. None means the default (train on assistant turns).
    weight: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.weight is not None:
            out["weight"] = self.weight
        return out


@dataclass
class Conversation:
    messages: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)  # source, id, line, ...

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": [m.to_dict() for m in self.messages]}
        out.update({k: v for k, v in self.meta.items() if k not in ("line", "file")})
        return out

    def location(self, position: int | None = None) -> str:
        """``file:line`` where the conversation was read, else its position when it was built in memory."""
        if "file" in self.meta and "line" in self.meta:
            return f"{self.meta['file']}:{self.meta['line']}"
        return f"conversation #{position}" if position is not None else "<data>"

    def as_template_input(self) -> list[dict[str, str]]:
        """Messages as chat templates expect them (role and content only)."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def trains_on(self, index: int) -> bool:
        """Whether the loss covers message ``index``: assistant turns unless weight says 0."""
        m = self.messages[index]
        return m.role == "assistant" and m.weight != 0


@dataclass
class PreferencePair:
    """A conversation prefix plus a preferred and a rejected assistant answer."""

    prompt: list[Message]
    chosen: Message
    rejected: Message
    meta: dict[str, Any] = field(default_factory=dict)
