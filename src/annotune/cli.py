"""The `annotune` command: one sub-command per stage; each handler is thin and calls into its package."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from pathlib import Path

from annotune import __version__
from annotune.config import at_least_one
from annotune.errors import AnnotuneError
from annotune.generation.config import OFFLINE_BATCH


def _quiet_libraries() -> None:
    """Keep library chatter (load bars, advisory warnings) out of the user's terminal.

    Set through the environment, which the libraries read when imported, so commands that never load a
    model do not pay for importing transformers.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own load bars follow this too
    for module in ("transformers", "peft", "torch"):  # deprecation notices meant for library authors
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)


def cmd_train(args: argparse.Namespace) -> int:
    from annotune.config import TrainConfig, build_config
    from annotune.train.sft import train

    cfg = build_config(TrainConfig, args, args.config)
    run_dir = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"Run saved to {run_dir}\nChat with it: annotune chat {run_dir}")
    return 0


def _generation_config(args: argparse.Namespace):
    from annotune.config import build_config
    from annotune.generation.config import GenerationConfig

    return build_config(GenerationConfig, args)


def cmd_chat(args: argparse.Namespace) -> int:
    from annotune.chat import chat

    return chat(args.model, _generation_config(args), prompt=args.prompt, system=args.system,
                routing=not args.no_routing)


def cmd_generate(args: argparse.Namespace) -> int:
    from annotune.chat import generate_file

    n = generate_file(args.model, args.input, args.output, _generation_config(args), batch_size=args.batch_size,
                      routing=not args.no_routing, progress=not args.no_progress)
    print(f"Wrote {n} answers to {args.output}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from annotune.quickstart import quickstart

    return quickstart(out=args.out, model=args.model, epochs=args.epochs)


def _add_train(sub) -> None:
    from annotune.config import TrainConfig, add_config_arguments

    p = sub.add_parser("train", help="fine-tune a model on an instruction dataset",
                       description="Fine-tune a causal LM (LoRA or full) on an instruction dataset. "
                                   "Runs unchanged under torchrun / accelerate launch (DDP).")
    p.add_argument("data", nargs="?", default=argparse.SUPPRESS, help="training data file")
    p.add_argument("--config", help="YAML file of options; command-line options override it")
    add_config_arguments(p, TrainConfig, skip=("data",))
    p.set_defaults(func=cmd_train)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """--max-new-tokens, --temperature, --top-p, --stop, --seed: one option per GenerationConfig field."""
    from annotune.config import add_config_arguments
    from annotune.generation.config import GenerationConfig

    add_config_arguments(parser, GenerationConfig)


def add_routing_argument(parser: argparse.ArgumentParser) -> None:
    """--no-routing: a run answers every request with its adapter (generation/routing.py)."""
    parser.add_argument("--no-routing", action="store_true",
                        help="answer every request with the run's adapter, as an exported model does (default: "
                             "requests unlike the run's training questions are answered by its base model)")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """--no-progress, as train's and ingest's (their config field `progress`): no bar on stderr, e.g. in CI logs."""
    parser.add_argument("--no-progress", action="store_true", help="don't show a progress bar")


def _add_inference(sub) -> None:
    p = sub.add_parser("chat", help="chat with a run or any model (streams tokens)")
    p.add_argument("model", help="run folder, or any model reference (hub id, folder, .gguf, smollm2-135m)")
    p.add_argument("--prompt", help="answer this one message and exit instead of an interactive session")
    p.add_argument("--system", help="system prompt (default: the run's own, if its training chats shared one)")
    add_generation_arguments(p)
    add_routing_argument(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("generate", help="answer every prompt of a JSONL file (continuously batched)")
    p.add_argument("model", help="run folder, or any model reference")
    p.add_argument("--input", required=True, help="JSONL; each line holds `messages` or `prompt`")
    p.add_argument("--output", required=True, help="JSONL; each input line plus `answer`, `finish_reason`, `usage`")
    add_generation_arguments(p)
    p.add_argument("--batch-size", type=at_least_one, default=OFFLINE_BATCH,
                   help=f"most answers generated at once (default {OFFLINE_BATCH})")
    add_routing_argument(p)
    add_progress_argument(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("quickstart", help="train the embedded model on the bundled example and compare it")
    p.add_argument("--out", default="runs/quickstart", help="run folder (replaced if it exists)")
    p.add_argument("--model", default="smollm2-135m", help="base model")
    p.add_argument("--epochs", type=at_least_one, default=None, help="override the default number of epochs")
    p.set_defaults(func=cmd_quickstart)


def build_parser() -> argparse.ArgumentParser:
    from annotune.annotate.cli import register as register_workbench
    from annotune.dataset.cli import register as register_data
    from annotune.evaluate.cli import register as register_evaluate
    from annotune.export.cli import register as register_export
    from annotune.ingest.cli import register as register_ingest
    from annotune.serve.cli import register as register_serve

    parser = argparse.ArgumentParser(prog="annotune", description="Fine-tune open LLMs on your domain knowledge.")
    parser.add_argument("--version", action="version", version=f"annotune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs and full tracebacks")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_train(sub)
    _add_inference(sub)
    register_data(sub)
    register_ingest(sub)
    register_workbench(sub)
    register_evaluate(sub)
    register_serve(sub)
    register_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except AnnotuneError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # A path the user gave that cannot be created, opened or written (a file where a folder is needed,
        # a read-only place, a full disk): say which and why, not a traceback.
        if args.verbose or not exc.filename:
            raise
        path = Path(os.fsdecode(exc.filename))
        if path.name.startswith(".") and path.name.endswith(".tmp"):  # an output's temporary name
            where = f"cannot write into {path.parent}"
        else:
            where = f"{path}" + (f" -> {os.fsdecode(exc.filename2)}" if exc.filename2 else "")
        blocking = next((p for p in (path, *path.parents) if p.is_file()), None)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR) and blocking is not None:
            print(f"error: {path}: {blocking} is a file where a folder is needed; choose another path",
                  file=sys.stderr)
            return 1
        print(f"error: {where}: {exc.strerror or exc}; check the path (its folders must exist as folders, and be "
              "writable for outputs)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
