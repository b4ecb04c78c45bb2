"""Typed options of ``annotune ingest``, loaded from YAML and overridable from the command line.

Each field is documented once; that text feeds ``--help`` and docs/ingest.md alike.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Readers
    text_field: str = Field("text", description="CSV column or JSONL field holding the text (dots reach into objects: post.body).")
    title_field: str = Field("title", description="CSV column or JSONL field holding a title, when present.")
    url_field: str = Field("url", description="CSV column or JSONL field holding a URL, when present.")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this many MB are skipped and reported.")
    # Cleaning
    unicode_form: Literal["NFC", "NFKC"] = Field("NFC", description="Unicode normalisation form (NFKC also folds ligatures and full-width forms).")
    fix_mojibake: bool = Field(True, description="Repair text decoded with the wrong encoding (ftfy).")
    languages: list[str] = Field(default_factory=list, description="Keep only documents in these languages (ISO codes, e.g. en,de); empty keeps all.")
    min_language_score: float = Field(0.5, ge=0, le=1, description="Confidence below which a document's language counts as unknown.")
    min_words: int = Field(5, ge=0, description="Drop documents with fewer words than this (filter: too_short).")
    max_symbol_ratio: float = Field(0.3, ge=0, le=1, description="Drop documents whose share of non-alphanumeric, non-space characters exceeds this (filter: symbols).")
    max_repeated_line_ratio: float = Field(0.3, ge=0, le=1, description="Drop documents whose share of repeated lines exceeds this (filter: repeated_lines).")
    max_boilerplate_ratio: float = Field(0.5, ge=0, le=1, description="Drop documents whose share of boilerplate lines exceeds this; below it those lines are removed (filter: boilerplate).")
    boilerplate_patterns: list[str] = Field(default_factory=list, description="Extra regular expressions for boilerplate lines (matched case-insensitively).")
    # Deduplication
    dedup: bool = Field(True, description="Drop exact and near-duplicate documents.")
    near_dup_threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard similarity of word 5-grams at or above which documents are near-duplicates.")
    num_perm: int = Field(128, ge=16, le=512, description="MinHash permutations (more: better estimates, slower).")
    shingle_words: int = Field(5, ge=1, le=20, description="Words per shingle for near-duplicate detection.")
    # Redaction
    redact: bool = Field(True, description="Replace e-mails, phone numbers, card numbers, IBANs and IP addresses with typed placeholders.")
    redact_patterns: dict[str, str] = Field(default_factory=dict, description="Extra patterns to redact: NAME: regex; matches become <NAME>.")
    keep_pii: list[str] = Field(default_factory=list, description="Values never redacted, such as your own support e-mail and phone number (phone numbers match whatever their spacing and punctuation).")
    # Chunking
    chunk_tokens: int = Field(400, ge=16, description="Token budget of a chunk (tokens are words and punctuation marks).")
    chunk_overlap: int = Field(40, ge=0, description="Tokens repeated from the end of a chunk at the start of the next one in the same section.")
    workers: int = Field(0, ge=0, description="Processes for the per-document steps: 0 uses every CPU core, 1 runs in this process.")
    progress: bool = Field(True, description="Show a progress bar.")

    @model_validator(mode="before")
    @classmethod
    def _redact_section(cls, values):
        """``redact: {keep: [...]}`` in YAML is redaction on with an allow-list (the same as ``keep_pii``)."""
        if isinstance(values, dict) and isinstance(values.get("redact"), dict):
            section = dict(values["redact"])
            unknown = set(section) - {"enabled", "keep"}
            if unknown:
                raise ValueError(f"redact: unknown key(s) {', '.join(sorted(unknown))}; use enabled: true|false "
                                 "and keep: [values never redacted]")
            values = {**values, "redact": section.get("enabled", True)}
            values["keep_pii"] = [*values.get("keep_pii", []), *section.get("keep", [])]
        return values

    @field_validator("keep_pii")
    @classmethod
    def _check_keep(cls, value: list[str]) -> list[str]:
        for item in value:
            if not isinstance(item, str) or not re.search(r"[0-9A-Za-z]", item):
                raise ValueError(f"{item!r} is not a value to keep: give the e-mail address or number as written")
        return value

    @field_validator("languages", mode="before")
    @classmethod
    def _split_languages(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("boilerplate_patterns")
    @classmethod
    def _check_boilerplate(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _compile(pattern, "boilerplate_patterns")
        return value

    @field_validator("redact_patterns")
    @classmethod
    def _check_redact(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
                raise ValueError(f"name {name!r} must be letters, digits and underscores (it becomes <{name.upper()}>)")
            _compile(pattern, f"redact_patterns.{name}")
        return value

    @model_validator(mode="after")
    def _check_overlap(self) -> IngestConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})")
        return self


def _compile(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: {pattern!r} is not a valid regular expression ({exc})") from None
