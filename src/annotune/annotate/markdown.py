"""A small, safe Markdown renderer for project guidelines.

Everything is HTML-escaped first, so guidelines can never inject markup; then headings, paragraphs,
bullet and numbered lists, fenced code, ``**bold**``, ``*italic*``, ```code``` and ``[links](https://...)``
(http, https and mailto only) are turned into tags.
"""

from __future__ import annotations

import html
import re

from markupsafe import Markup

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(((?:https?://|mailto:)[^\s)\"'<>]+)\)"), r'<a href="\2" rel="noopener noreferrer">\1</a>'),
]
_HEADING = re.compile(r"^(#{1,4})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


def _inline(text: str) -> str:
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def render(source: str) -> Markup:
    lines = html.escape(source or "", quote=True).splitlines()
    out: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None
    in_code = False

    def flush() -> None:
        nonlocal list_tag
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for line in lines:
        if line.strip().startswith("```"):
            flush()
            out.append("</code></pre>" if in_code else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            out.append(line + "\n")
            continue
        heading, bullet, numbered = _HEADING.match(line), _BULLET.match(line), _NUMBERED.match(line)
        if heading:
            flush()
            level = len(heading.group(1)) + 1  # the page title is h1
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif bullet or numbered:
            tag = "ul" if bullet else "ol"
            if paragraph or list_tag != tag:
                flush()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline((bullet or numbered).group(1))}</li>")  # type: ignore[union-attr]
        elif not line.strip():
            flush()
        else:
            if list_tag:
                flush()
            paragraph.append(line.strip())
    flush()
    if in_code:
        out.append("</code></pre>")
    return Markup("\n".join(out))
