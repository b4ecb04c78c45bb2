"""Chunking by headings and paragraphs to a token budget with overlap."""

from __future__ import annotations

from annotune.ingest.chunk import chunk_text, count_tokens
from annotune.ingest.config import IngestConfig
from annotune.ingest.document import Document
from annotune.ingest.steps import finish

LONG = " ".join(f"Sentence number {i} says something." for i in range(80))


def test_headings_start_sections_and_give_the_heading_path():
    text = "# Guide\n\nIntro text.\n\n## Setup\n\nSetup text.\n\n### Wi-Fi\nWi-Fi text.\n\n# Other\n\nMore."
    chunks = chunk_text(text, budget=200, overlap=10)
    assert [c.heading for c in chunks] == ["Guide", "Guide > Setup", "Guide > Setup > Wi-Fi", "Other"]
    assert chunks[2].text == "### Wi-Fi\n\nWi-Fi text."


def test_budget_is_respected_and_consecutive_chunks_overlap():
    chunks = chunk_text("# Title\n\n" + LONG, budget=60, overlap=12)
    assert len(chunks) > 3
    assert all(c.tokens <= 60 and c.tokens == count_tokens(c.text) for c in chunks)
    for previous, current in zip(chunks, chunks[1:]):
        shared = current.text.split()[:5]
        assert " ".join(shared) in previous.text  # the start of each chunk repeats the end of the one before
    assert all(c.heading == "Title" for c in chunks)


def test_zero_overlap_partitions_the_text():
    chunks = chunk_text(LONG, budget=50, overlap=0)
    assert " ".join(c.text for c in chunks).split() == LONG.split()


def test_word_longer_paragraph_without_sentences_is_split():
    chunks = chunk_text("x " * 500, budget=100, overlap=10)
    assert all(c.tokens <= 100 for c in chunks) and len(chunks) >= 5


def test_finish_gives_records_with_provenance_and_stable_ids():
    document = Document(text="# Intro\n\nWrite to a@b.io for help. " + LONG, path="docs/a.pdf", title="A",
                        url=None, position={"page": 3}, meta={"language": "en"})
    cfg = IngestConfig(chunk_tokens=80, chunk_overlap=8)
    records, pii = finish(document, cfg)
    again, _ = finish(document, cfg)
    assert pii == {"EMAIL": 1} and "<EMAIL>" in records[0]["text"]
    assert records[1]["source"] == {"path": "docs/a.pdf", "title": "A", "url": None,
                                    "position": {"page": 3, "chunk": 1, "heading": "Intro"}}
    assert records[1]["meta"]["language"] == "en" and records[1]["meta"]["tokens"] <= 80
    assert [r["id"] for r in records] == [r["id"] for r in again]
    assert len({r["id"] for r in records}) == len(records)
    unredacted, counts = finish(document, IngestConfig(redact=False))
    assert "a@b.io" in unredacted[0]["text"] and not counts
