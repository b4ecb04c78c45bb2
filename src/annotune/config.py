"""Typed configuration. Each field is documented once; that text feeds `--help` and the YAML files alike.

Precedence: field defaults < the YAML file given by ``--config`` < options given on the command line.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from annotune.errors import AnnotuneError


def _count_or_auto(value: Any) -> Any:
    if value == "auto" or (type(value) is int and value >= 0):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"give a count (0 or more) or auto, not {value!r}")


CountOrAuto = Annotated[int | Literal["auto"], BeforeValidator(_count_or_auto)]


def _share_count_or_auto(value: Any) -> Any:
    if value == "auto" or (type(value) in (int, float) and value >= 0):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if 0 <= number < float("inf"):
            return int(number) if number.is_integer() and "." not in value else number
    raise ValueError(f"give a share (0-1), a count (1 or more) or auto, not {value!r}")


ShareCountOrAuto = Annotated[int | float | Literal["auto"], BeforeValidator(_share_count_or_auto)]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(None, description="Training data file (openai, alpaca, sharegpt, prompt_completion or csv).")
    val_data: str | None = Field(None, description="Separate validation file; if unset, --val-size is split off the data.")
    format: str | None = Field(None, description="Data format; detected from the file when unset.")
    model: str = Field("smollm2-135m", description="Base model: hub id, local folder, .gguf file, or 'smollm2-135m'.")
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapter or full fine-tuning.")
    epochs: int | None = Field(None, ge=1, description="Passes over the training data (default: from the data's size, about 800 conversations seen, 1 to 16 epochs; at least 3 for a set of facts: asked several ways, or an FAQ).")
    lr: float = Field(5e-4, gt=0, description="Peak learning rate (cosine decay after warmup); with LoRA, the A matrices' (the B matrices learn at --lora-plus times it).")
    batch_size: int = Field(4, ge=1, description="Conversations per micro-batch (per process), packed into one row.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    max_length: int = Field(1024, ge=8, description="Longest conversation in tokens; longer ones are refused.")
    lora_r: int = Field(32, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(64, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_targets: str = Field("all-linear", description="Modules that get adapters: 'all-linear' or comma-separated names.")
    lora_plus: float = Field(16.0, ge=1, description="LoRA+: the adapters' B matrices learn at this many times --lr, their A matrices at --lr (1: both at --lr).")
    lora_layers: float = Field(1.0, gt=0, le=1, description="Share of the decoder layers, counted from the top, whose modules get adapters (1: every layer).")
    compile: Literal["auto", "on", "off"] = Field("auto", description="Compile the decoder layers (torch.compile): faster steps for half a minute of compiling at the start, seconds once cached (auto: single-process runs of at least 200 steps on a CPU with AMX).")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="bf16 autocast where supported (auto), or force.")
    seed: int = Field(42, description="Seed for data order, split, initialisation and dropout.")
    val_size: ShareCountOrAuto = Field("auto", description="Validation share (0-1) or count (>=1) split off --data; only conversations whose answers other training conversations also give, so no fact is lost to validation (auto: none below 1,000 conversations, where every phrasing teaches more trained than validated, 0.1 from there, at most 1,000; 0: none).")
    keep_best: bool = Field(True, description="Save the latest epoch whose validation answer-token accuracy is level with the best (within its noise), not simply the last.")
    patience: int = Field(3, ge=0, description="Stop after this many epochs in a row clearly below the best validation accuracy (0: never; needs a validation set).")
    replay: float = Field(0.25, ge=0, le=4, description="General-ability replay: add this share of the training chats as the base model's own answers to everyday prompts (0: none).")
    neftune: float = Field(5.0, ge=0, description="NEFTune: noise of this alpha on the input embeddings while training (0: none).")
    question_noise: float = Field(0.5, ge=0, le=1, description="Share of user turns reworded each epoch (a few words deleted or swapped; names and numbers kept) so answers follow a question's meaning, not one wording (0: none).")
    paraphrases: CountOrAuto = Field("auto", description="Wordings per fact: each fact asked fewer ways gets rewordings of its questions by the base model (those that name exactly what it names, ask for the same kind of thing and stay nearest its own answer) until it is asked this many ways (auto: 6 where the data's median answer is given in two chats or more, or most of its user turns are questions (an FAQ), none for one-off instructions; 0: none).")
    fact_balance: int = Field(4, ge=1, description="Each epoch, train every fact (a chat's answers) about as often as a typical one (the median chat's fact), repeating the chats of a fact asked fewer ways, up to this many times (1: every chat once).")
    fact_sheets: int = Field(0, ge=0, description="Each epoch, also train every subject's facts (chats whose first question names the same thing) answered together in one chat, at most this many per chat, in a new order (0: none).")
    digit_weight: float = Field(1.0, ge=1, description="Weight in the loss trained on of the answer tokens that are digits (times, prices, counts, codes), which a model recalls one by one and can mix up under a new wording (1: every token alike; 3 helped two domain sets and hurt a third, docs/benchmarks.md).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of optimizer steps spent warming up the lr (at least 5 steps, or a quarter of a shorter run; 0: none).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    eval_every: int = Field(0, ge=0, description="Validation loss every N optimizer steps (0: only at epoch ends).")
    save_every: CountOrAuto = Field("auto", description="Checkpoint every N optimizer steps (0: at epoch ends only; auto: at epoch ends, and every 500 steps within an epoch longer than that).")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")
    log_every: int = Field(1, ge=1, description="Write a metrics row every N optimizer steps.")
    chat_template: str | None = Field(None, description="Jinja chat template file to use instead of the model's own.")
    out: str | None = Field(None, description="Run folder (default runs/<data name>-<method>).")
    resume: bool = Field(False, description="Continue the run in --out from its latest checkpoint.")
    overwrite: bool = Field(False, description="Replace an existing run folder.")
    progress: bool = Field(True, description="Show a progress bar.")

    def to_yaml(self) -> str:
        lines = []
        for name, field in type(self).model_fields.items():
            lines.append(f"# {field.description}")
            lines.append(yaml.safe_dump({name: getattr(self, name)}, sort_keys=False).strip())
        return "\n".join(lines) + "\n"


def at_least_one(text: str) -> int:
    """argparse type: a whole number of at least 1 (counts, sizes, epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _arg_type(annotation: Any):
    """The argparse type for a field annotation (``int``, ``str | None`` -> ``str`` ...)."""
    if typing.get_origin(annotation) is Annotated:
        return _arg_type(typing.get_args(annotation)[0])
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _arg_type(args[0])
    if typing.get_origin(annotation) is Literal:
        return str
    if (int in args or float in args) and any(typing.get_origin(a) is Literal for a in args):  # 4, 0.1 or auto:
        return str  # the field's validator reads it
    return annotation


def add_config_arguments(parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per config field; absent options stay unset so YAML values are not overridden."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _arg_type(field.annotation)
        default = field.default_factory() if field.default_factory else field.default
        help_text = field.description if "(default:" in field.description else f"{field.description} (default: {default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
            continue
        if typing.get_origin(kind) is list:  # a repeatable option: --stop A --stop B
            parser.add_argument(flag, type=typing.get_args(kind)[0], action="append", default=argparse.SUPPRESS,
                                help=help_text.replace("(default: [])", "(repeat the option for several)"))
            continue
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else None
        parser.add_argument(flag, type=kind, choices=choices, default=argparse.SUPPRESS, help=help_text)


def build_config(model: type[BaseModel], args: argparse.Namespace, config_file: str | None = None):
    """Merge field defaults, the YAML file and the given command-line options into a validated config."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_yaml(config_file))
    values.update({k: v for k, v in vars(args).items() if k in model.model_fields})
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        where = f" (from {config_file} and the command line)" if config_file else ""
        raise AnnotuneError(f"invalid configuration{where}: {problems}") from None


def _problem(error: Any) -> str:
    """One validation problem as ``field.path: message`` (a check across fields has no path)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(map(str, error["loc"]))
    if len(error["loc"]) == 1:  # one field: name its command-line option too
        where += f" (--{where.replace('_', '-')})"
    return f"{where}: {message}" if where else message


def load_yaml(path: str) -> dict[str, Any]:
    from annotune.dataset.files import read_user_file

    file = Path(path)
    try:
        values = yaml.safe_load(read_user_file(file, "--config")) or {}
    except yaml.YAMLError as exc:
        raise AnnotuneError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise AnnotuneError(f"{file}: expected a mapping of option: value")
    return values
