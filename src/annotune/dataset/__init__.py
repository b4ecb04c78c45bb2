"""Instruction datasets: read and write every supported format, validate, and split.

Typical use (what training does before loading any model)::

    conversations = load_valid("data.jsonl", token_length=counter, max_length=2048)
    train, val = train_val_split(conversations, val_size=0.1, seed=0)
"""

from annotune.dataset.formats import FORMATS, WRITABLE_FORMATS, ReadResult, detect_format, read_dataset, write_dataset
from annotune.dataset.problem import Problem
from annotune.dataset.split import train_val_split
from annotune.dataset.validate import Report, Stats, load_valid, validate

__all__ = [
    "FORMATS",
    "WRITABLE_FORMATS",
    "Problem",
    "ReadResult",
    "Report",
    "Stats",
    "detect_format",
    "load_valid",
    "read_dataset",
    "train_val_split",
    "validate",
    "write_dataset",
]
