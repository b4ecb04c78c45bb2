"""Normalisation, mojibake repair, each quality filter and the language filter."""

from __future__ import annotations

from annotune.ingest.clean import clean_and_filter, clean_text, detect_language
from annotune.ingest.config import IngestConfig

GOOD = "The purifier cleans the air of a room of up to forty square metres and runs quietly at night."


def test_whitespace_control_characters_and_line_endings():
    raw = "Line\tone  with   spaces\u00a0here\r\nLine\x07 two\u200b\x0cThird\n\n\n\n  Fourth  "
    assert clean_text(raw) == "Line one with spaces here\nLine two\n\nThird\n\nFourth"


def test_mojibake_is_repaired_and_unicode_normalised():
    assert clean_text("The cafÃ© doesnâ€™t open before nine.") == "The café doesn't open before nine."
    decomposed = "cafe\u0301"
    assert clean_text(decomposed) == "café"
    assert clean_text("ﬁle ２０２４", form="NFKC") == "file 2024"
    assert clean_text("ﬁle", form="NFC", fix_mojibake=False) == "ﬁle"


def test_kept_document_gets_its_language():
    result = clean_and_filter(GOOD, IngestConfig())
    assert result.dropped_by is None and result.language == "en"


def test_too_short():
    assert clean_and_filter("Hi there", IngestConfig()).dropped_by == "too_short"
    assert clean_and_filter("Hi there", IngestConfig(min_words=2)).dropped_by is None


def test_mostly_symbols():
    assert clean_and_filter("$$$ %%% ### @@@ !!! *** ^^^ &&& ((( ))) +++ === one two three four five six", IngestConfig()).dropped_by == "symbols"


def test_repeated_lines():
    menu = "\n".join(["Home", "Products", "Contact"] * 4) + "\n" + GOOD
    assert clean_and_filter(menu, IngestConfig()).dropped_by == "repeated_lines"
    assert clean_and_filter(menu, IngestConfig(max_repeated_line_ratio=0.9)).dropped_by is None


def test_boilerplate_lines_are_removed_or_the_document_dropped():
    content = f"{GOOD}\n{GOOD.upper()}\n{GOOD.lower()}"
    some = f"{content}\nAll rights reserved.\nWe use cookies to improve your experience."
    result = clean_and_filter(some, IngestConfig(max_repeated_line_ratio=1))
    assert result.dropped_by is None and result.text == content and result.boilerplate_lines == 2
    mostly = "Skip to content\nSign in\nSubscribe to our newsletter\n" + GOOD
    assert clean_and_filter(mostly, IngestConfig()).dropped_by == "boilerplate"
    custom = clean_and_filter(f"{GOOD}\nPosted from the Tarn app", IngestConfig(boilerplate_patterns=["posted from"]))
    assert custom.text == GOOD


def test_a_long_line_mentioning_cookies_is_content():
    line = ("Our guide explains how the purifier handles smoke from baking cookies in a small kitchen with "
            "the window closed and the fan on high.")
    assert clean_and_filter(line, IngestConfig()).boilerplate_lines == 0


def test_language_filter():
    german = "Der Luftreiniger reinigt die Luft in einem Raum von bis zu vierzig Quadratmetern und läuft leise."
    assert detect_language(german)[0] == "de"
    assert clean_and_filter(german, IngestConfig(languages=["en"])).dropped_by == "language"
    assert clean_and_filter(german, IngestConfig(languages="en,de")).dropped_by is None
