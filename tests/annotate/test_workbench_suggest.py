"""Model drafts: parsing a reply into a pair, and filling rate/compare/correct drafts with a real (tiny) model."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from annotune.annotate import db as dbm
from annotune.annotate import importing, queue, schema, store
from annotune.annotate.errors import Invalid
from annotune.annotate.suggest import fill_drafts, parse_pair, suggest


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


def project_with(db, user, tmp_path, task_type, rows, name=None):
    name = name or task_type
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with db.transaction() as conn:
        project = store.create_project(conn, name, task_type,
                                       labels=["a", "b"] if task_type == "label" else None)
        store.add_member(conn, project, user)
        result = importing.import_file(conn, project, path)
    return project, result


def statuses(db, project):
    with db.transaction() as conn:
        return [r.status for r in conn.execute(sa.select(schema.records.c.status).where(
            schema.records.c.project_id == project.id).order_by(schema.records.c.id))]


def test_prompts_wait_for_answers_then_enter_the_queue(wb, tiny):
    """The real engine end to end on a tiny random model: whatever it replies, every record is either filled
    by it and open, or still waiting as a draft."""
    db, user, tmp_path = wb
    rate, result = project_with(db, user, tmp_path, "rate", [{"prompt": "Question one?"}, {"prompt": "Two?"}])
    assert result.drafts == 2 and statuses(db, rate) == ["draft", "draft"]
    with db.transaction() as conn:
        assert queue.next_task(conn, rate, user) is None  # nothing to rate yet
    counts = suggest(db, "rate", str(tiny), max_new_tokens=6)
    assert counts["records"] == 2 and counts["filled"] + counts["unusable"] == 2
    rows = records(db, rate)
    assert all((r.status == "open" and r.payload["model"] == tiny.name and r.payload["answer"]) or
               (r.status == "draft" and not r.payload["answer"]) for r in rows)
    assert [r.status for r in rows].count("open") == counts["filled"]


def records(db, project):
    with db.transaction() as conn:
        return conn.execute(sa.select(schema.records).where(schema.records.c.project_id == project.id)
                            .order_by(schema.records.c.id)).all()


class Scripted:
    """A generator that answers each prompt from a script keyed by a word in the prompt's last message."""

    def __init__(self, script: dict[str, str], during=None):
        self.script, self.during, self.prompts = script, during, []

    def __call__(self, conversations):
        self.prompts.extend(conversations)
        if self.during:
            self.during()
        return [next((reply for key, reply in self.script.items() if key in conv[-1]["content"]), "")
                for conv in conversations]


def test_write_drafts_parse_the_reply_and_skip_unusable_ones(wb):
    db, user, tmp_path = wb
    project, _ = project_with(db, user, tmp_path, "write", [{"id": "a", "text": "The X1 weighs 2 kg."},
                                                           {"id": "b", "text": "The X2 is blue."}])
    generate = Scripted({"X1": "Question: How heavy is the X1?\nAnswer: 2 kg.\n\nQuestion: more?",
                         "X2": "I cannot help with that"})
    counts = fill_drafts(db, "write", generate, "scripted")
    assert counts == {"records": 2, "filled": 1, "unusable": 1}
    first, second = records(db, project)
    assert first.payload["suggestion"] == {"model": "scripted",
                                           "pairs": [{"question": "How heavy is the X1?", "answer": "2 kg."}]}
    assert "suggestion" not in second.payload and second.status == "open"
    assert generate.prompts[0][0]["role"] == "system" and "The X1 weighs 2 kg." in generate.prompts[0][-1]["content"]
    assert fill_drafts(db, "write", Scripted({}), "scripted")["records"] == 1  # only the one without a draft


def test_correct_rate_and_compare_drafts_fill_and_open_their_records(wb):
    db, user, tmp_path = wb
    asked, _ = project_with(db, user, tmp_path, "correct",
                            [{"messages": [{"role": "user", "content": "Colour of the X2?"}]}], name="asked")
    chunks, _ = project_with(db, user, tmp_path, "correct", [{"id": "c", "text": "The X3 has 4 wheels."}],
                             name="chunks")
    script = Scripted({"Colour": "Blue.", "X3": "Question: How many wheels?\nAnswer: Four."})
    assert fill_drafts(db, "asked", script, "m") == {"records": 1, "filled": 1, "unusable": 0}
    assert fill_drafts(db, "chunks", script, "m") == {"records": 1, "filled": 1, "unusable": 0}
    [answered], [written] = records(db, asked), records(db, chunks)
    assert (answered.payload["answer"], answered.payload["draft_by"], answered.status) == ("Blue.", "m", "open")
    assert (written.payload["question"], written.payload["answer"], written.status) == (
        "How many wheels?", "Four.", "open")

    rate, _ = project_with(db, user, tmp_path, "rate", [{"prompt": "Reset?"}, {"prompt": "Reboot?"}])
    assert fill_drafts(db, "rate", Scripted({"Reset": "Hold the button."}), "m") == {
        "records": 2, "filled": 1, "unusable": 1}  # an empty reply is not an answer
    assert [(r.status, r.payload["answer"]) for r in records(db, rate)] == [("open", "Hold the button."),
                                                                            ("draft", "")]
    compare, _ = project_with(db, user, tmp_path, "compare", [{"prompt": "Which?", "answers": ["one answer"]}])
    fill_drafts(db, "compare", Scripted({"Which": "another answer"}), "m2")
    [record] = records(db, compare)
    assert record.status == "open" and [a["content"] for a in record.payload["answers"]] == ["one answer",
                                                                                            "another answer"]
    assert record.payload["answers"][1]["model"] == "m2"


def test_a_record_annotated_while_the_model_drafts_keeps_what_the_annotator_saw(wb):
    db, user, tmp_path = wb
    project, _ = project_with(db, user, tmp_path, "write", [{"id": "a", "text": "The X1 weighs 2 kg."}])

    def annotate_meanwhile():
        with db.transaction() as conn:
            task = queue.next_task(conn, project, user)
            queue.submit(conn, project, user, task.assignment_id, {"pairs": [{"question": "Q?", "answer": "A."}]})

    counts = fill_drafts(db, "write", Scripted({"X1": "Question: How heavy?\nAnswer: 2 kg."}, annotate_meanwhile),
                         "m")
    assert counts == {"records": 1, "filled": 0, "unusable": 0}
    assert "suggestion" not in records(db, project)[0].payload


def test_label_projects_take_no_drafts(wb, tiny):
    db, user, tmp_path = wb
    project_with(db, user, tmp_path, "label", [{"text": "a text"}])
    with pytest.raises(Invalid, match="no model drafts"):
        suggest(db, "label", str(tiny))
