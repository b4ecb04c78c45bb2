"""The ``annotune ingest`` command: files and folders in, ``chunks.jsonl`` and ``report.json`` out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annotune.config import add_config_arguments, build_config
from annotune.ingest.config import IngestConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ingest`` to the top-level parser's sub-commands."""
    parser = subparsers.add_parser(
        "ingest", help="turn files and folders into clean, deduplicated, redacted chunks",
        description="Read .txt, .md, .html, .pdf, .docx, .csv, .jsonl and .json files; clean, filter, deduplicate, "
                    "redact PII and chunk them. Writes OUT/chunks.jsonl and OUT/report.json; a re-run with the "
                    "same --out reads only new or changed files.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to read (folders recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", help="YAML file of options (see docs/ingest.md); command-line options override it")
    add_config_arguments(parser, IngestConfig, skip=("languages", "boilerplate_patterns", "redact_patterns"))
    parser.add_argument("--languages", default=argparse.SUPPRESS,
                        help="keep only these languages, comma-separated ISO codes (e.g. en,de); default: all")
    parser.set_defaults(func=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    from annotune.ingest.pipeline import ingest

    cfg = build_config(IngestConfig, args, args.config)
    report = ingest(args.paths, Path(args.out), cfg)
    print(report.summary())
    # Exit 1 when files were given but none could be read, so scripts notice; the report says why.
    usable = sum(report.count(status) for status in ("read", "unchanged", "partial"))
    if report.count("failed") and not usable:
        print("error: none of the files could be read (the reasons are above and in report.json)", file=sys.stderr)
        return 1
    return 0
