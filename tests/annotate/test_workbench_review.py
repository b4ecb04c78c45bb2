"""The review queue and what reviewers see, on SQLite and PostgreSQL: leases that hand each annotation to one
reviewer, no self-review unless the project allows it, limits on write pairs, whether a draft was changed,
and "my annotations" per user, newest first."""

from __future__ import annotations

import json

import pytest

from annotune.annotate import db as dbm
from annotune.annotate import exporting, queue, review, store
from annotune.annotate.errors import Forbidden, Invalid
from annotune.annotate.importing import import_file
from annotune.annotate.tasks import MAX_PAIRS


@pytest.fixture
def wb(db_url, tmp_path):
    """An admin who also annotates, an annotator, two reviewers, and a write project of 4 chunks whose first
    two carry a model suggestion."""
    db = dbm.open_database(db_url)
    chunks = tmp_path / "chunks.jsonl"
    rows = [{"id": f"c{i}", "text": f"The X{i} weighs {i} kg."} for i in range(4)]
    chunks.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with db.transaction() as conn:
        users = {name: store.add_user(conn, name, role, "password-" + name) for name, role in
                 [("boss", "admin"), ("ann", "annotator"), ("rev1", "reviewer"), ("rev2", "reviewer")]}
        project = store.create_project(conn, "facts", "write")
        for name in users:
            store.add_member(conn, project, users[name])
        import_file(conn, project, chunks)
        from annotune.annotate import schema

        for record_id in (1, 2):  # what `workbench suggest` leaves on a record
            conn.execute(schema.records.update().where(schema.records.c.id == record_id).values(payload={
                "context": f"The X{record_id - 1} weighs {record_id - 1} kg.",
                "suggestion": {"model": "tiny", "pairs": [{"question": f"How heavy is the X{record_id - 1}?",
                                                           "answer": f"{record_id - 1} kg."}]}}))
    yield db, project, users
    db.dispose()


def do_task(db, project, user, pairs):
    with db.transaction() as conn:
        task = queue.next_task(conn, project, user)
        return task, queue.submit(conn, project, user, task.assignment_id, {"pairs": pairs})["annotation_id"]


def fill(db, project, users):
    """ann does records 1-3, boss record 4. Record 1: suggestion kept; 2: suggestion changed; 3, 4: no draft."""
    ids = []
    for name, change in (("ann", False), ("ann", True), ("ann", None), ("boss", None)):
        with db.transaction() as conn:
            task = queue.next_task(conn, project, users[name])
        suggestion = task.payload.get("suggestion")
        pairs = suggestion["pairs"] if suggestion and not change else [{"question": "Q?", "answer": "A."}]
        with db.transaction() as conn:
            ids.append(queue.submit(conn, project, users[name], task.assignment_id, {"pairs": pairs})["annotation_id"])
    return ids


def test_each_annotation_goes_to_one_reviewer_and_an_expired_lease_to_the_next(wb):
    db, project, users = wb
    ids = fill(db, project, users)
    with db.transaction() as conn:
        first = review.next_for_review(conn, project, users["rev1"], lease_seconds=60, now=1000.0)
        again = review.next_for_review(conn, project, users["rev1"], lease_seconds=60, now=1010.0)
        second = review.next_for_review(conn, project, users["rev2"], lease_seconds=60, now=1010.0)
    assert first["id"] == again["id"] == ids[0]  # a reviewer keeps their lease until they decide
    assert second["id"] == ids[1]  # the other reviewer gets a different annotation, never the same one
    with db.transaction() as conn:
        # rev2 may take its own current lease and the two untouched ones; rev1 holds the first
        assert review.queue_counts(conn, project, users["rev2"], now=1010.0) == {"free": 3, "own": 0, "leased": 1}
        # rev1's lease expired: rev2 (done with nothing yet) still holds ids[1] first, then gets ids[0]
        assert review.next_for_review(conn, project, users["rev2"], now=1070.0)["id"] == ids[1]
        review.review(conn, project, users["rev2"], ids[1], "accept", 1)
        assert review.next_for_review(conn, project, users["rev2"], now=1070.0)["id"] == ids[0]
        review.release_review(conn, project, users["rev2"], ids[0])
        assert review.next_for_review(conn, project, users["rev1"], now=1071.0)["id"] == ids[0]


def test_nobody_reviews_their_own_annotation_unless_the_project_allows_it(wb):
    db, project, users = wb
    ids = fill(db, project, users)
    with db.transaction() as conn:
        seen = []
        while (item := review.next_for_review(conn, project, users["boss"])) is not None:
            seen.append(item["id"])
            review.review(conn, project, users["boss"], item["id"], "accept", item["version"])
        assert seen == ids[:3]  # boss's own annotation (ids[3]) never comes up
        assert review.queue_counts(conn, project, users["boss"]) == {"free": 0, "own": 1, "leased": 0}
        with pytest.raises(Forbidden, match="is your own; another reviewer decides"):
            review.review(conn, project, users["boss"], ids[3], "accept", 1)
        allowed = store.update_project(conn, project, self_review=True)
        assert allowed.self_review is True
        assert review.next_for_review(conn, allowed, users["boss"])["id"] == ids[3]
        assert review.review(conn, allowed, users["boss"], ids[3], "accept", 1)["status"] == "accepted"


def test_write_pairs_are_limited_server_side(wb):
    db, project, users = wb
    too_many = [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(MAX_PAIRS + 1)]
    with db.transaction() as conn:
        task = queue.next_task(conn, project, users["ann"])
        with pytest.raises(Invalid, match=f"has {MAX_PAIRS + 1} question/answer pairs; the limit is {MAX_PAIRS}"):
            queue.submit(conn, project, users["ann"], task.assignment_id, {"pairs": too_many})
        done = queue.submit(conn, project, users["ann"], task.assignment_id, {"pairs": too_many[:MAX_PAIRS]})
        stored = review.get_annotation(conn, project, users["ann"], done["annotation_id"])
    assert len(stored["value"]["pairs"]) == MAX_PAIRS


def test_changed_drafts_are_recorded_and_export_can_leave_out_unchanged_ones(wb, tmp_path):
    db, project, users = wb
    ids = fill(db, project, users)
    with db.transaction() as conn:
        flags = [review.get_annotation(conn, project, users["rev1"], i)["suggestion_changed"] for i in ids]
        for i in ids:
            review.review(conn, project, users["rev1"], i, "accept", 1)
        everything = exporting.export_conversations(conn, project, "openai")
        changed = exporting.export_conversations(conn, project, "openai", changed_only=True)
    assert flags == [False, True, None, None]
    assert len(everything) == 4
    assert [c.meta["id"] for c in changed] == [f"facts-{i}-0" for i in ids[1:]]


def test_my_annotations_are_the_users_own_newest_first_and_paginated(wb):
    db, project, users = wb
    ids = fill(db, project, users)
    with db.transaction() as conn:
        mine = review.list_annotations(conn, project, users["ann"], mine=True)
        boss = review.list_annotations(conn, project, users["boss"], mine=True)  # an admin sees all otherwise
        page2 = review.list_annotations(conn, project, users["ann"], mine=True, limit=2, offset=2)
    assert [a["id"] for a in mine] == ids[2::-1]
    assert [a["id"] for a in boss] == [ids[3]]
    assert [a["id"] for a in page2] == [ids[0]]
