"""The per-document steps are pure functions of a row, so ``datasets.map(num_proc=...)`` can run them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotune.ingest.config import IngestConfig
from annotune.ingest.dedup import Deduplicator
from annotune.ingest.steps import finish_rows, prepare_row

TEXTS = ["The purifier cleans the air of a room of up to forty square metres; mail help@tarn.example.",
         "THE PURIFIER CLEANS THE AIR OF A ROOM OF UP TO FORTY SQUARE METRES; MAIL HELP@TARN.EXAMPLE.",
         "ok",
         "Error E27 means the filter door is open; close it and restart the unit to clear the error."]


def test_steps_under_datasets_map_with_worker_processes():
    datasets = pytest.importorskip("datasets")
    cfg = IngestConfig()
    rows = [{"text": t, "path": "posts.jsonl", "title": None, "url": None, "position": json.dumps({"line": i + 1}),
             "meta": "{}"} for i, t in enumerate(TEXTS)]
    ds = datasets.Dataset.from_list(rows)
    prepared = ds.map(prepare_row, fn_kwargs={"cfg": cfg}, num_proc=2)
    assert prepared["dropped_by"] == ["", "", "too_short", ""]
    # Deduplication is the one step that sees every document: one pass over the signature column.
    dedup = Deduplicator(cfg.near_dup_threshold, cfg.num_perm)
    keep = [row["dropped_by"] == "" and dedup.check(str(i), row["exact"], np.array(row["signature"], np.uint32)) is None
            for i, row in enumerate(prepared)]
    assert keep == [True, False, False, True]
    chunks = prepared.select([i for i, k in enumerate(keep) if k]).map(
        finish_rows, fn_kwargs={"cfg": cfg}, batched=True, num_proc=2, remove_columns=prepared.column_names)
    assert chunks["text"][0] == "The purifier cleans the air of a room of up to forty square metres; mail <EMAIL>."
    assert json.loads(chunks["source"][1])["position"] == {"line": 4, "chunk": 0}
