"""How long to train, and which epoch's weights to keep.

Teaching a model facts takes many passes over a small set; a large set of one-off instructions needs one. When
--epochs is not given, the length follows the data: enough epochs for about ``TARGET_PASSES`` conversations seen
(200 optimizer steps at the default batch of 4, whatever the batch, accumulation or number of processes), at most
``MAX_EPOCHS``, and at least one, or ``MIN_FACT_EPOCHS`` where the data is a set of facts (asked several ways, or
as questions: ``paraphrase.teaches_facts``): each of its facts must be seen as often in a large set as in a small
one (see docs/training.md for how these were chosen on the domain sets of benchmarks/domains/).

With a validation set, every epoch ends with its loss and its answer-token accuracy (the share of answer tokens
the model would pick itself, teacher-forced). A small validation set measures that share roughly (at 100 answer
tokens, one token is a point), so an epoch counts as level with the best one seen when its accuracy is within
``noise_margin`` of it, and the latest epoch level with the best is the one saved: later epochs of a cosine
schedule have trained at a smaller learning rate, so a level score there is the better model. Training stops
early once ``patience`` epochs in a row scored clearly below the best.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

TARGET_PASSES = 800  # conversations trained on, repeats counted
MAX_EPOCHS = 16
# A set of facts (asked several ways, or an FAQ) trains at least this many epochs: 800 conversations are 3 epochs of the
# quickstart, and the five domain sets together (390 chats, 1,020 an epoch with rewordings and replay) got one
# epoch and 35% held-out, against 79-99% each alone (docs/benchmarks.md).
MIN_FACT_EPOCHS = 3
FILE = "best.pt"


def auto_epochs(conversations: int, facts: bool = False) -> int:
    """Epochs for about TARGET_PASSES conversations seen, within [1, MAX_EPOCHS]; at least MIN_FACT_EPOCHS for a
    set of facts (``facts``), whose every fact must be seen as often however many there are."""
    floor = MIN_FACT_EPOCHS if facts else 1
    return max(floor, min(MAX_EPOCHS, math.ceil(TARGET_PASSES / max(1, conversations))))


def noise_margin(accuracy: float, tokens: int) -> float:
    """How far below ``accuracy`` a score on ``tokens`` validation tokens can fall by chance: two standard errors
    of a share measured on that many tokens, and never less than one token."""
    tokens = max(1, tokens)
    return max(1 / tokens, 2 * math.sqrt(accuracy * (1 - accuracy) / tokens))


@dataclass
class Best:
    """The validated epoch whose weights are kept. Its trainable weights live in the run folder (``best.pt``,
    written by the main process), so a resumed run still knows them; the file is removed once the run is saved."""

    patience: int
    tokens: int  # answer tokens of the validation set, which every epoch's accuracy is measured on
    epoch: int | None = None
    accuracy: float = -1.0  # the kept epoch's
    loss: float = math.inf
    peak: float = -1.0  # the highest accuracy of any epoch so far
    since: int = 0  # epochs validated since the kept one

    def update(self, epoch: int, accuracy: float, loss: float) -> bool:
        """Record an epoch's validation; True when its weights are the ones to keep: its accuracy is within the
        noise margin of the highest so far (so the later of two level epochs wins)."""
        self.peak = max(self.peak, accuracy)
        if accuracy >= self.peak - noise_margin(self.peak, self.tokens) - 1e-12:
            self.epoch, self.accuracy, self.loss, self.since = epoch, accuracy, loss, 0
            return True
        self.since += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.since >= self.patience

    def summary(self) -> dict | None:
        if self.epoch is None:
            return None
        return {"epoch": self.epoch, "val_accuracy": self.accuracy, "val_loss": self.loss,
                "best_val_accuracy": self.peak}

    def save(self, run_dir: Path, model) -> None:
        from annotune.train.checkpoint import trainable_state

        tmp = run_dir / f"{FILE}.tmp"
        torch.save({"summary": self.summary(), "weights": trainable_state(model)}, tmp)
        os.replace(tmp, run_dir / FILE)

    def load(self, run_dir: Path, epochs_done: int) -> None:
        """At a resume: the best epoch up to the checkpoint (its weights stay on disk)."""
        file = run_dir / FILE
        if not file.is_file():
            return
        summary = torch.load(file, weights_only=True)["summary"]
        if summary["epoch"] <= epochs_done:
            self.epoch, self.accuracy, self.loss = summary["epoch"], summary["val_accuracy"], summary["val_loss"]
            self.peak = summary.get("best_val_accuracy", self.accuracy)
            self.since = epochs_done - self.epoch

    def restore(self, run_dir: Path, model) -> None:
        from annotune.train.checkpoint import set_trainable

        set_trainable(model, torch.load(run_dir / FILE, weights_only=True)["weights"])

    def discard(self, run_dir: Path) -> None:
        (run_dir / FILE).unlink(missing_ok=True)
