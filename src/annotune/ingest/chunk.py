"""Chunking: split a document at its headings, then pack paragraphs up to a token budget with overlap.

Tokens are words and punctuation marks (``\\w+`` or one other non-space character), which tracks subword
token counts of English text within a factor of about 1.3 without loading a tokenizer. A chunk never spans
two sections; a paragraph longer than the budget is split at sentence ends, then between words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+|[^\w\s]")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass
class Chunk:
    text: str
    index: int
    heading: str | None  # the heading path, "Guide > Setup > Wi-Fi"
    tokens: int


def _blocks(text: str) -> Iterator[tuple[int, str]]:
    """(heading level or 0, block text) for each heading line and each paragraph."""
    for paragraph in text.split("\n\n"):
        lines = paragraph.strip().split("\n")
        body: list[str] = []
        for line in lines:
            match = _HEADING.match(line)
            if match:
                if body:
                    yield 0, "\n".join(body)
                    body = []
                yield len(match.group(1)), line.strip()
            elif line.strip():
                body.append(line)
        if body:
            yield 0, "\n".join(body)


def _pieces(block: str, limit: int) -> Iterator[tuple[str, int]]:
    """(piece, tokens): ``block`` itself if it fits ``limit`` tokens, else sentence groups, else word runs."""
    total = count_tokens(block)
    if total <= limit:
        yield block, total
        return
    for piece in _split(block, limit):
        yield piece, count_tokens(piece)


def _split(block: str, limit: int) -> Iterator[str]:
    """Sentences packed up to ``limit`` tokens; a sentence over the limit is packed word by word."""
    def units() -> Iterator[str]:
        for sentence in _SENTENCE_END.split(block):
            if count_tokens(sentence) > limit:
                yield from sentence.split()
            else:
                yield sentence

    run: list[str] = []
    size = 0
    for unit in units():
        n = count_tokens(unit)
        if size + n > limit and run:
            yield " ".join(run)
            run, size = [], 0
        run.append(unit)
        size += n
    if run:
        yield " ".join(run)


def _tail(text: str, tokens: int) -> str:
    """The last ``tokens`` tokens of ``text``, cut at a token start so the original spacing is kept."""
    if tokens <= 0:
        return ""
    starts = [m.start() for m in _TOKEN.finditer(text)]
    return text[starts[-tokens]:] if len(starts) > tokens else ""


def chunk_text(text: str, budget: int = 400, overlap: int = 40) -> list[Chunk]:
    """Chunks of at most ``budget`` tokens; consecutive chunks of one section share ``overlap`` tokens."""
    builder = _Builder(budget, overlap)
    for level, block in _blocks(text):
        if level:
            builder.heading(level, block)
            continue
        for number, (piece, tokens) in enumerate(_pieces(block, budget - overlap)):
            # Pieces of one paragraph (and the overlap before them) continue a line; paragraphs do not.
            builder.add(piece, tokens, joined=number > 0)
    return builder.finish()


class _Builder:
    def __init__(self, budget: int, overlap: int) -> None:
        self.budget, self.overlap = budget, overlap
        self.chunks: list[Chunk] = []
        self.path: list[tuple[int, str]] = []
        self.text, self.size, self.has_body = "", 0, False

    def _append(self, piece: str, separator: str, tokens: int | None = None) -> None:
        self.text = f"{self.text}{separator}{piece}" if self.text else piece
        self.size += count_tokens(piece) if tokens is None else tokens

    def heading(self, level: int, line: str) -> None:
        if self.has_body:
            self._emit()
        self.path = [(lvl, title) for lvl, title in self.path if lvl < level]
        self.path.append((level, _HEADING.match(line).group(2)))
        self._append(line, "\n\n")

    def add(self, piece: str, n: int, joined: bool) -> None:
        if self.size + n > self.budget and self.has_body:
            tail = _tail(self.text, self.overlap)
            self._emit()
            if tail:
                self._append(tail, "")
                joined = True
        elif self.size + n > self.budget:  # only headings so far: keep the nearest one with its text
            last = self.text.rsplit("\n\n", 1)[-1]
            self.text, self.size = last, count_tokens(last)
        self._append(piece, " " if joined else "\n\n", n)
        self.has_body = True

    def _emit(self) -> None:
        heading = " > ".join(title for _, title in self.path) or None
        self.chunks.append(Chunk(self.text, len(self.chunks), heading, self.size))
        self.text, self.size, self.has_body = "", 0, False

    def finish(self) -> list[Chunk]:
        if self.has_body or (self.text and not self.chunks):
            self._emit()
        return self.chunks
