"""Every task type from import to export: the exported files pass `annotune data validate` and say what
majority, scores and review decided."""

from __future__ import annotations

import json

import pytest

from annotune.annotate import db as dbm
from annotune.annotate import exporting, importing, queue, review, stats, store
from annotune.annotate.errors import Invalid
from annotune.dataset.formats import read_dataset
from annotune.dataset.validate import validate
from annotune.errors import DataError


@pytest.fixture
def wb(tmp_path):
    db = dbm.open_database(f"sqlite:///{tmp_path / 'wb.db'}")
    with db.transaction() as conn:
        users = [store.add_user(conn, n, r, "password-1") for n, r in
                 [("a1", "annotator"), ("a2", "annotator"), ("a3", "annotator"), ("rev", "reviewer")]]
    yield db, users
    db.dispose()


def make_project(db, users, tmp_path, task_type, lines, overlap=2, labels=None):
    path = tmp_path / f"{task_type}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with db.transaction() as conn:
        project = store.create_project(conn, task_type, task_type, labels=labels, overlap=overlap)
        for user in users:
            store.add_member(conn, project, user)
        importing.import_file(conn, project, path)
    return project


def annotate_all(db, project, user, value_for):
    """``user`` annotates every record they get; value_for(payload, task) -> value."""
    while True:
        with db.transaction() as conn:
            task = queue.next_task(conn, project, user)
            if task is None:
                return
            queue.submit(conn, project, user, task.assignment_id, value_for(task.payload, task))


def accept_all(db, project, reviewer, reject_if=lambda a: False):
    with db.transaction() as conn:
        for item in review.list_annotations(conn, project, reviewer, status="pending", limit=1000):
            decision = "reject" if reject_if(item) else "accept"
            review.review(conn, project, reviewer, item["id"], decision, item["version"])


def export(db, project, to, path, **kwargs):
    with db.transaction() as conn:
        count = exporting.export_project(conn, project, to, path, **kwargs)
    report = validate(read_dataset(path))
    assert report.ok, report.format_text()
    return count, [json.loads(line) for line in path.read_text().splitlines()]


def test_write_exports_each_accepted_pair_with_its_source(wb, tmp_path):
    db, users = wb
    chunks = [{"id": f"c{i}", "text": f"Part {i} weighs {i} kg.", "source": {"path": "manual.md"}} for i in range(3)]
    project = make_project(db, users, tmp_path, "write", chunks)
    for user in users[:2]:
        annotate_all(db, project, user, lambda p, t, u=user: {"pairs": [
            {"question": f"How heavy is part {p['context'][5]}?", "answer": p["context"]},
            {"question": "", "answer": ""}]})
    accept_all(db, project, users[3], reject_if=lambda a: a["annotator"] == "a2" and a["record_id"] == 1)
    count, rows = export(db, project, "openai", tmp_path / "out.jsonl")
    assert count == 3 and len(rows) == 3  # 3 records x 2 annotators, one rejected, identical pairs once
    assert rows[0]["messages"][0] == {"role": "user", "content": "How heavy is part 0?"}
    assert rows[0]["source"]["path"] == "manual.md" and rows[0]["annotator"] in ("a1", "a2")
    for fmt in ("alpaca", "sharegpt"):
        assert export(db, project, fmt, tmp_path / f"out-{fmt}.jsonl")[0] == 3
    with pytest.raises(Invalid, match="no preference pairs"):
        export(db, project, "preference", tmp_path / "pref.jsonl")
    agreement = stats.project_stats(db.engine.connect(), project)["agreement"]
    assert agreement["measure"] == "text" and agreement["text_similarity"] == pytest.approx(1.0)


def test_compare_exports_majority_preferences(wb, tmp_path):
    db, users = wb
    lines = [{"id": f"p{i}", "prompt": f"Q{i}?", "answers": [{"content": f"good {i}", "model": "tuned"},
                                                              {"content": f"bad {i}", "model": "base"}]}
             for i in range(4)]
    project = make_project(db, users, tmp_path, "compare", lines, overlap=3)
    seen_orders = set()

    def vote(user_index):
        def value(payload, task):
            seen_orders.add(tuple(i for i, _ in task.shown_answers()))
            record = int(payload["messages"][0]["content"][1])
            if record == 3:  # one vote each way plus a tie: no majority
                return {"choice": ["tie", 0, 1][user_index]}
            return {"choice": 1 if (record == 2 and user_index > 0) else 0}
        return value

    for i, user in enumerate(users[:3]):
        annotate_all(db, project, user, vote(i))
    accept_all(db, project, users[3])
    count, rows = export(db, project, "preference", tmp_path / "pref.jsonl")
    assert count == 3
    by_prompt = {r["prompt"][0]["content"]: r for r in rows}
    assert by_prompt["Q0?"]["chosen"][0]["content"] == "good 0" and by_prompt["Q0?"]["rejected"][0]["content"] == "bad 0"
    assert by_prompt["Q2?"]["chosen"][0]["content"] == "bad 2"  # two of three preferred the second answer
    assert "Q3?" not in by_prompt
    sft = export(db, project, "openai", tmp_path / "sft.jsonl")[1]
    assert [r["messages"][-1]["content"] for r in sft] == ["good 0", "good 1", "bad 2"]
    assert len(seen_orders) == 2  # answers were shown in both orders


def test_rate_exports_answers_above_the_score_and_best_over_worst(wb, tmp_path):
    db, users = wb
    lines = [{"id": f"r{i}", "prompt": "How do I reset it?" if i < 2 else f"Other {i}?", "answer": f"answer {i}",
              "model": "m"} for i in range(3)]
    project = make_project(db, users, tmp_path, "rate", lines)
    scores = {"answer 0": [5, 4], "answer 1": [2, 3], "answer 2": [4, 3]}
    for i, user in enumerate(users[:2]):
        annotate_all(db, project, user, lambda p, t, i=i: {"score": scores[p["answer"]][i]})
    accept_all(db, project, users[3])
    _, rows = export(db, project, "openai", tmp_path / "sft.jsonl")
    assert [r["messages"][-1]["content"] for r in rows] == ["answer 0"]  # means 4.5, 2.5, 3.5; default min 4
    assert len(export(db, project, "openai", tmp_path / "sft3.jsonl", min_score=3.0)[1]) == 2
    _, prefs = export(db, project, "preference", tmp_path / "pref.jsonl")
    assert len(prefs) == 1 and prefs[0]["chosen"][0]["content"] == "answer 0"
    assert prefs[0]["rejected"][0]["content"] == "answer 1"
    agreement = stats.project_agreement(db.engine.connect(), project)
    assert agreement["measure"] == "ordinal" and agreement["units"] == 3


def test_label_and_correct_exports(wb, tmp_path):
    db, users = wb
    texts = [{"id": f"t{i}", "text": f"ticket {i}"} for i in range(2)]
    labels = make_project(db, users, tmp_path, "label", texts, labels=["billing", "tech"])
    annotate_all(db, labels, users[0], lambda p, t: {"label": "billing"})
    annotate_all(db, labels, users[1], lambda p, t: {"label": "billing" if p["text"].endswith("0") else "tech"})
    accept_all(db, labels, users[3])
    _, rows = export(db, labels, "openai", tmp_path / "labels.jsonl")
    assert [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows] == [("ticket 0", "billing")]

    drafts = [{"messages": [{"role": "user", "content": f"Is {i} even?"},
                            {"role": "assistant", "content": "Yes."}], "id": f"d{i}"} for i in range(3)]
    correct = make_project(db, users, tmp_path, "correct", drafts, overlap=1)
    verdicts = iter([{"verdict": "ok", "question": "Is 0 even?", "answer": "Yes."},
                     {"verdict": "edited", "question": "Is 1 even?", "answer": "No, 1 is odd."},
                     {"verdict": "rejected", "reason": "unclear"}])
    annotate_all(db, correct, users[0], lambda p, t: next(verdicts))
    with pytest.raises(DataError, match="nothing to export"):
        export(db, correct, "openai", tmp_path / "none.jsonl")
    _, rows = export(db, correct, "alpaca", tmp_path / "corrected.jsonl", include_pending=True)
    assert [r["output"] for r in rows] == ["Yes.", "No, 1 is odd."]
