"""What the user passed to `train`, read and checked before any model loads: the data (or a resumed run's own saved
split), its encoding against --max-length, and a --chat-template file. Every problem is an AnnotuneError that says
where (file, line, field) and what to do."""

from __future__ import annotations

import logging
from pathlib import Path

from annotune.config import TrainConfig
from annotune.conversation import Conversation
from annotune.dataset.files import read_user_file
from annotune.dataset.formats import capped_lines
from annotune.errors import AnnotuneError, DataError
from annotune.models.templates import Encoded, encode

log = logging.getLogger(__name__)


def read_data(cfg: TrainConfig, run_dir: Path) -> tuple[list[Conversation], list[Conversation]]:
    from annotune.dataset import load_valid
    from annotune.dataset.split import FILL_FROM, auto_val_size, covered_split

    if cfg.resume:  # the run's own split, exactly as trained: the original files may have changed since
        saved = run_dir / "data"
        if not (saved / "train.jsonl").is_file():
            raise AnnotuneError(f"--resume: {saved / 'train.jsonl'} is missing; start the run again with --overwrite")
        val = saved / "val.jsonl"
        return load_valid(saved / "train.jsonl", "openai"), load_valid(val, "openai") if val.is_file() else []
    if not cfg.data:
        raise AnnotuneError("no training data: pass a data file (annotune train DATA)")
    convs = load_valid(cfg.data, cfg.format)
    _note_rare_facts(convs)
    if cfg.val_data:
        return convs, load_valid(cfg.val_data, cfg.format)
    val_size = cfg.val_size
    if val_size == "auto":
        val_size = auto_val_size(len(convs))
        if not val_size:
            every = f"all {len(convs):,} conversations train" if len(convs) != 1 else "the one conversation trains"
            log.warning("No validation split: %s (--val-size auto holds none out below %s; --val-size 0.1 or "
                        "--val-data FILE gives one)", every, f"{FILL_FROM:,}")
    return covered_split(convs, val_size, cfg.seed)  # no fact of a small set is lost to validation


def _note_rare_facts(convs: list[Conversation]) -> None:
    """Say how many answers the data gives in fewer than half the typical number of chats (`data validate` lists
    them): new wordings of those facts are where a tuned model misses most."""
    from annotune.dataset.validate import asked_ways

    _, typical, _, rare = asked_ways(convs)
    if rare:
        log.warning("%d of the data's answers %s given in fewer than half the typical %d chats: new wordings of a fact "
                    "asked fewer ways are answered right least often; `annotune data validate` lists them "
                    "(docs/training.md, \"Wordings per fact\")", rare, "is" if rare == 1 else "are", typical)


def encode_all(tokenizer, convs: list[Conversation], max_length: int) -> list[Encoded]:
    encoded, problems = [], []
    for conv in convs:
        enc = encode(tokenizer, conv)
        where = f"{conv.location()}:messages"
        if len(enc.input_ids) > max_length:
            problems.append(f"{where}: {len(enc.input_ids)} tokens, over --max-length {max_length}; "
                            "shorten it or raise --max-length")
        elif enc.supervised == 0:
            problems.append(f"{where}: no assistant token left to train on after tokenisation")
        encoded.append(enc)
    if problems:
        raise DataError(capped_lines(problems))
    return encoded


def read_template(path: str | None) -> str | None:
    if not path:
        return None
    from jinja2 import TemplateSyntaxError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    file = Path(path)
    template = read_user_file(file, "--chat-template")
    try:
        _compile_jinja_template(template)  # the way transformers compiles it, so its own tags are known
    except TemplateSyntaxError as exc:
        raise AnnotuneError(f"--chat-template: {file}:{exc.lineno}: template syntax error: {exc.message}") from None
    return template
