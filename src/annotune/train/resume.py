"""What `train --resume` does with options given alongside it.

A resumed run continues the saved one, so an option that would make it a different run (another model, data,
learning rate, rank, batch, seed ...) is refused, naming the saved value. A longer run, bookkeeping (progress
bar, logging, validation and checkpoint frequency) and compiling leave the steps already taken as they were, so
they are applied and reported. Options equal to the saved ones are no change at all.
"""

from __future__ import annotations

from pathlib import Path

from annotune.config import TrainConfig
from annotune.errors import RunDirError

# Where and whether to resume: they name the run rather than describe it.
_CONTROL = frozenset({"resume", "overwrite", "out"})
# Safe to change: they decide what is shown, logged, validated or checkpointed, or how fast the same steps run,
# never what is trained.
_BOOKKEEPING = frozenset({"progress", "log_every", "eval_every", "save_every", "keep_checkpoints", "compile"})
_PATHS = frozenset({"data", "val_data", "chat_template"})
# Options added since runs were first saved: a config.yaml without them comes from a run trained with them off,
# so it resumes that way rather than with today's defaults.
_ADDED_OFF = {"neftune": 0.0, "keep_best": False, "question_noise": 0.0, "fact_balance": 1, "paraphrases": 0,
              "fact_sheets": 0, "lora_plus": 1.0, "digit_weight": 1.0}


def flag(name: str) -> str:
    return "DATA" if name == "data" else "--" + name.replace("_", "-")


def _same(name: str, given, saved) -> bool:
    if given == saved:
        return True
    if name in _PATHS and given and saved:  # the same file named from another folder or differently
        return Path(given).expanduser().resolve() == Path(saved).expanduser().resolve()
    return False


def merge(saved: dict, given: TrainConfig, run_dir: Path) -> tuple[TrainConfig, list[str]]:
    """The config to resume with and a note per applied change; :class:`RunDirError` lists every refused one.

    ``saved`` is the run's config.yaml; ``given`` the config built from this command, whose explicitly set
    fields (command line or --config file) are the options given with --resume.
    """
    values = TrainConfig(**{**_ADDED_OFF, **saved}).model_dump()
    applied, refused = [], []
    for name in sorted(given.model_fields_set - _CONTROL):
        new, old = getattr(given, name), values[name]
        if _same(name, new, old):
            continue
        change = f"{flag(name)} {new} (saved: {old})"
        if name in _BOOKKEEPING:
            applied.append(change)
        elif name == "epochs" and new > old:
            applied.append(f"{change}: the run continues to {new} epochs; from the resumed step on, the learning "
                           "rate follows the longer run's schedule")
        elif name == "epochs":
            refused.append(f"{change}: a resumed run can only be made longer")
            continue
        else:
            refused.append(change)
            continue
        values[name] = new
    if refused:
        raise RunDirError(f"--resume continues {run_dir} as it was saved, and these options would change it: "
                          + "; ".join(refused) + ". Drop them to resume, or train a new run (--out NEW or --overwrite)")
    values.update(resume=True, overwrite=False, out=str(run_dir), progress=given.progress)
    return TrainConfig(**values), applied
