"""The ``annotune data`` command group: ``validate`` and ``convert``.

Handlers return the exit code; user errors raise :class:`AnnotuneError`, which the top-level CLI prints
without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from annotune.dataset.formats import FORMATS, WRITABLE_FORMATS, read_dataset, write_dataset
from annotune.dataset.validate import TokenLength, validate
from annotune.errors import AnnotuneError


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of tokens, got {text}")
    return value


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, help="input format (default: detected from the file)")
    parser.add_argument("--question-column", default="question", help="CSV column with the question")
    parser.add_argument("--answer-column", default="answer", help="CSV column with the answer")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data validate`` and ``data convert`` to the top-level parser's sub-commands."""
    data = subparsers.add_parser("data", help="check and convert instruction datasets")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    check = commands.add_parser("validate", help="list every problem in a dataset file, then its statistics")
    check.add_argument("file", help="dataset file (JSONL, JSON or CSV)")
    _add_input_options(check)
    check.add_argument("--model", help="count lengths in this model's tokens (hub id, folder or GGUF)")
    check.add_argument("--max-length", type=_positive_int, help="flag conversations over this many tokens")
    check.set_defaults(func=run_validate)

    convert = commands.add_parser("convert", help="convert a dataset file to another format")
    convert.add_argument("input", help="dataset file to read")
    convert.add_argument("output", help="file to write (replaced atomically)")
    convert.add_argument("--to", required=True, choices=WRITABLE_FORMATS, help="output format")
    _add_input_options(convert)
    convert.set_defaults(func=run_convert)


def _token_counter(model: str | None) -> TokenLength | None:
    if model is None:
        return None
    # Imported here so `annotune data` works without the heavy model stack until --model asks for it.
    from annotune.models.templates import conversation_token_counter

    return conversation_token_counter(model)


def run_validate(args: argparse.Namespace) -> int:
    if args.max_length is not None and args.model is None:
        raise AnnotuneError("--max-length needs --model, to count tokens the way that model does; add --model")
    token_length = _token_counter(args.model)
    result = read_dataset(
        args.file, args.format, question_column=args.question_column, answer_column=args.answer_column
    )
    report = validate(result, token_length=token_length, max_length=args.max_length)
    print(f"{args.file}: {result.format} format")
    print(report.format_text())
    return 0 if report.ok else 1


def run_convert(args: argparse.Namespace) -> int:
    result = read_dataset(
        args.input, args.format, question_column=args.question_column, answer_column=args.answer_column
    )
    report = validate(result)
    if not report.ok:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        count = len(report.problems)
        print(f"not converted: fix the {count} problem{'s' if count != 1 else ''} above first", file=sys.stderr)
        return 1
    written = write_dataset(result.conversations, args.output, args.to)
    print(f"wrote {written} conversation{'s' if written != 1 else ''} to {args.output} ({args.to})")
    return 0
