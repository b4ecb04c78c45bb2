"""The flywheel: weak answers from an evaluation go back to the workbench as tasks.

A ``correct`` project gets every question a run answered wrong (or with token F1 under the threshold where the
data has no keys), the run's answer as the draft to fix and the reference shown beside it. A ``compare`` project
gets every question where the baseline and the run answered differently, both answers side by side. Task ids
name the run and the question, so sending the same evaluation again adds nothing twice. After annotators work
through them, `workbench export` and `train` close the loop.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from annotune.dataset.files import read_jsonl
from annotune.errors import AnnotuneError


def is_weak(answer: dict, threshold: float) -> bool:
    if "key_accuracy" in answer:
        return answer["key_accuracy"] < 1
    return answer["token_f1"] < threshold


def task_rows(task_type: str, rows: list[dict], run: str, baseline: str | None, threshold: float) -> list[dict]:
    """Import rows for a project of ``task_type`` (conversations for correct, answers for compare), from
    answers.jsonl rows."""
    if task_type == "correct":  # conversations ending in the run's answer: the draft to fix
        return [{"id": f"eval:{run}:{row['id']}", "model": run, "reference": row["reference"],
                 "messages": [*row["messages"], {"role": "assistant", "content": row["answers"][run]["text"]}]}
                for row in rows if is_weak(row["answers"][run], threshold)]
    if task_type == "compare":
        if baseline is None:
            raise AnnotuneError("--to-workbench with a compare project needs a baseline to compare the run with")
        return [{"id": f"eval:{baseline}-vs-{run}:{row['id']}", "messages": row["messages"],
                 "answers": [{"content": row["answers"][baseline]["text"], "model": baseline},
                             {"content": row["answers"][run]["text"], "model": run}], "reference": row["reference"]}
                for row in rows if row["answers"][baseline]["text"].strip() != row["answers"][run]["text"].strip()]
    raise AnnotuneError(f"--to-workbench takes a correct project (wrong answers to fix) or a compare project "
                        f"(baseline against run); this one is a {task_type} project")


def send(answers_file: Path, project: str, run: str, baseline: str | None, threshold: float,
         db_url: str | None = None, client=None) -> dict:
    """Create the tasks in ``project`` (local database ``db_url``, or a running workbench through ``client``, an
    :class:`annotune.annotate.client.Client`); returns counts."""
    rows = read_jsonl(answers_file)
    if client is not None:
        try:
            found = [p for p in client.projects() if p["name"] == project]
            if not found:
                raise AnnotuneError(f"no project {project!r} on {client.http.base_url} that your token can see")
            tasks = task_rows(found[0]["task_type"], rows, run, baseline, threshold)
            if not tasks:
                return {"tasks": 0, "added": 0, "already_there": 0}
            with _rows_file(tasks) as path:
                result = client.import_file(project, path, kind=_kind(found[0]["task_type"]))
        finally:
            client.close()
        return {"tasks": len(tasks), "added": result["added"], "already_there": result["already_there"]}
    from annotune.annotate.db import open_database
    from annotune.annotate.importing import import_file
    from annotune.annotate.store import find_project

    db = open_database(db_url)
    with db.transaction() as conn:
        found = find_project(conn, project)
        tasks = task_rows(found.task_type, rows, run, baseline, threshold)
        if not tasks:
            return {"tasks": 0, "added": 0, "already_there": 0}
        with _rows_file(tasks) as path:
            result = import_file(conn, found, path, kind=_kind(found.task_type))
    return {"tasks": len(tasks), "added": result.added, "already_there": result.already_there}


def _kind(task_type: str) -> str:
    return "conversations" if task_type == "correct" else "answers"


class _rows_file:
    """The tasks as a temporary JSONL file, removed afterwards."""

    def __init__(self, tasks: list[dict]):
        self.tasks = tasks

    def __enter__(self) -> Path:
        handle = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8")
        with handle:
            handle.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in self.tasks)
        self.path = Path(handle.name)
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
