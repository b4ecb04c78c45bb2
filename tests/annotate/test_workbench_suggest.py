"""Model drafts: parsing a reply into a pair, and filling rate/compare/correct drafts with a real (tiny) model."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from annotune.annotate import db as dbm
from annotune.annotate import importing, queue, schema, store
from annotune.annotate.errors import Invalid
from annotune.annotate.suggest import parse_pair, suggest


def test_parse_pair_reads_the_requested_form_and_a_plain_question():
    assert parse_pair("Question: How long?\nAnswer: Six months.") == {"question": "How long?", "answer": "Six months."}
    assert parse_pair("question:what colour answer: blue") == {"question": "what colour", "answer": "blue"}
    assert parse_pair("How long does it last? About six months.") == {"question": "How long does it last?",
                                                                     "answer": "About six months."}
    assert parse_pair("no question here") is None
    assert parse_pair("Question: only a question") is None
    assert parse_pair("Question: How long?\nAnswer:") is None
    assert parse_pair("Question: How long?\nAnswer: How long?\n\nThe answer is: ...") is None  # an echo
    assert parse_pair("Question: Why?\nAnswer: Dust.\n\nQuestion: And?") == {"question": "Why?", "answer": "Dust."}


@pytest.fixture
def wb(tmp_path):
    db = dbm.open_database(f"sqlite:///{tmp_path / 'wb.db'}")
    with db.transaction() as conn:
        user = store.add_user(conn, "ann", "annotator", "password-1")
    yield db, user, tmp_path
    db.dispose()


def project_with(db, user, tmp_path, task_type, rows):
    path = tmp_path / f"{task_type}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with db.transaction() as conn:
        project = store.create_project(conn, task_type, task_type,
                                       labels=["a", "b"] if task_type == "label" else None)
        store.add_member(conn, project, user)
        result = importing.import_file(conn, project, path)
    return project, result


def statuses(db, project):
    with db.transaction() as conn:
        return [r.status for r in conn.execute(sa.select(schema.records.c.status).where(
            schema.records.c.project_id == project.id).order_by(schema.records.c.id))]


def test_prompts_wait_for_answers_then_enter_the_queue(wb, tiny):
    db, user, tmp_path = wb
    rate, result = project_with(db, user, tmp_path, "rate", [{"prompt": "Question one?"}, {"prompt": "Two?"}])
    assert result.drafts == 2 and statuses(db, rate) == ["draft", "draft"]
    with db.transaction() as conn:
        assert queue.next_task(conn, rate, user) is None  # nothing to rate yet
    counts = suggest(db, "rate", str(tiny), max_new_tokens=6)
    assert counts["records"] == 2 and counts["filled"] + counts["unusable"] == 2
    with db.transaction() as conn:
        task = queue.next_task(conn, rate, user)
    if counts["filled"]:
        assert task.payload["model"] == tiny.name and task.payload["answer"]

    compare, _ = project_with(db, user, tmp_path, "compare", [{"prompt": "Which?", "answers": ["one answer"]}])
    suggest(db, "compare", str(tiny), max_new_tokens=6)
    with db.transaction() as conn:
        record = conn.execute(sa.select(schema.records).where(schema.records.c.project_id == compare.id)).one()
    if len(record.payload["answers"]) == 2:
        assert record.status == "open" and record.payload["answers"][1]["model"] == tiny.name
    else:  # an empty reply is not an answer: the record keeps waiting
        assert record.status == "draft"
    assert suggest(db, "compare", str(tiny))["records"] in (0, 1)


def test_label_projects_take_no_drafts(wb, tiny):
    db, user, tmp_path = wb
    project_with(db, user, tmp_path, "label", [{"text": "a text"}])
    with pytest.raises(Invalid, match="no model drafts"):
        suggest(db, "label", str(tiny))
