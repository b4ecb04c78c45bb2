"""Task distribution on SQLite and PostgreSQL: overlap, no record twice, leases, expiry, skips, review."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from annotune.annotate import db as dbm
from annotune.annotate import queue, review, schema, store
from annotune.annotate.errors import Conflict, Forbidden, Invalid, NotFound


@pytest.fixture
def wb(db_url, tmp_path):
    """A database with an admin, three annotators, a reviewer and a write project of 6 chunks (overlap 2)."""
    db = dbm.open_database(db_url)
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("".join(json.dumps({"id": f"c{i}", "text": f"Fact number {i}."}) + "\n" for i in range(6)))
    with db.transaction() as conn:
        users = {name: store.add_user(conn, name, role, "password-" + name) for name, role in
                 [("admin", "admin"), ("ann1", "annotator"), ("ann2", "annotator"), ("ann3", "annotator"),
                  ("rev", "reviewer")]}
        project = store.create_project(conn, "facts", "write", overlap=2)
        for name in ("ann1", "ann2", "ann3", "rev"):
            store.add_member(conn, project, users[name])
        from annotune.annotate.importing import import_file

        import_file(conn, project, chunks)
    yield db, project, users
    db.dispose()


def pair(text: str) -> dict:
    return {"pairs": [{"question": f"What about {text}?", "answer": text}]}


def lease(db, project, user, seconds=600, now=None):
    with db.transaction() as conn:
        return queue.next_task(conn, project, user, seconds, now=now)


def submit(db, project, user, task, text="x", now=None):
    with db.transaction() as conn:
        return queue.submit(conn, project, user, task.assignment_id, pair(text), now=now)


def annotation_rows(db):
    with db.transaction() as conn:
        return conn.execute(sa.select(schema.annotations.c.record_id, schema.annotations.c.user_id)).all()


def test_migrations_are_recorded_and_idempotent(db_url):
    db = dbm.open_database(db_url)
    assert dbm.migrate(db.engine) == []  # already applied by open_database
    with db.transaction() as conn:
        names = [r.name for r in conn.execute(sa.select(schema.migrations.c.name))]
        tables = set(sa.inspect(conn).get_table_names())
    assert names == [name for name, _ in dbm.MIGRATIONS]
    assert {t.name for t in schema.metadata.sorted_tables} <= tables
    db.dispose()


def test_every_record_gets_overlap_annotations_from_distinct_users(wb):
    db, project, users = wb
    for name in ("ann1", "ann2", "ann3"):
        while (task := lease(db, project, users[name])) is not None:
            submit(db, project, users[name], task, name)
    rows = annotation_rows(db)
    per_record = Counter(record for record, _ in rows)
    assert len(per_record) == 6 and set(per_record.values()) == {2}
    assert len(set(rows)) == len(rows)  # nobody annotated a record twice
    with db.transaction() as conn:
        statuses = {r.status for r in conn.execute(sa.select(schema.records.c.status))}
    assert statuses == {"done"}
    assert lease(db, project, users["rev"]) is None  # finished records leave every queue


def test_the_same_task_comes_back_until_submitted_and_places_are_not_shared(wb):
    db, project, users = wb
    first = lease(db, project, users["ann1"])
    assert lease(db, project, users["ann1"]).assignment_id == first.assignment_id
    # Two more annotators lease; with overlap 2 only one of them can hold a place on ann1's record.
    second, third = lease(db, project, users["ann2"]), lease(db, project, users["ann3"])
    holders = [t.record_id for t in (first, second, third)]
    assert holders.count(first.record_id) <= 2
    assert Counter(holders).most_common(1)[0][1] <= 2


def test_expired_lease_frees_the_place_and_late_submit_is_refused_once_taken(wb):
    db, project, users = wb
    with db.transaction() as conn:
        store.update_project(conn, project, overlap=1)
        project = store.find_project(conn, "facts")
    now = time.time()  # leases and submits below run on a clock the test sets, never on sleeps
    stale = lease(db, project, users["ann1"], seconds=60, now=now)
    assert lease(db, project, users["ann2"], now=now + 59).record_id != stale.record_id  # still held
    taken = lease(db, project, users["ann3"], now=now + 61)
    assert taken.record_id == stale.record_id  # the expired place went to someone else
    submit(db, project, users["ann3"], taken, now=now + 62)
    with pytest.raises(Conflict, match="expired"):
        submit(db, project, users["ann1"], stale, now=now + 63)
    # A late submit while the place is still free is accepted.
    late = lease(db, project, users["ann1"], seconds=60, now=now + 64)
    assert submit(db, project, users["ann1"], late, now=now + 200)["version"] == 1


def test_an_expired_lease_of_ones_own_is_renewed_in_place(wb):
    db, project, users = wb
    now = time.time()
    stale = lease(db, project, users["ann1"], seconds=60, now=now)
    renewed = lease(db, project, users["ann1"], now=now + 61)
    assert (renewed.assignment_id, renewed.record_id, renewed.swap) == (stale.assignment_id, stale.record_id,
                                                                       stale.swap)
    assert renewed.expires_at == now + 61 + 600
    with db.transaction() as conn:
        rows = conn.execute(sa.select(schema.assignments.c.status).where(
            schema.assignments.c.user_id == users["ann1"].id)).all()
    assert [row.status for row in rows] == ["leased"]
    assert submit(db, project, users["ann1"], renewed)["record_id"] == stale.record_id


def test_skip_gives_the_place_away_and_never_returns_the_record(wb):
    db, project, users = wb
    task = lease(db, project, users["ann1"])
    with db.transaction() as conn:
        queue.skip(conn, project, users["ann1"], task.assignment_id)
    seen = set()
    while (t := lease(db, project, users["ann1"])) is not None:
        seen.add(t.record_id)
        submit(db, project, users["ann1"], t)
    assert task.record_id not in seen and len(seen) == 5
    with pytest.raises(Conflict, match="skipped"):
        submit(db, project, users["ann1"], task)


def test_submit_checks_the_value_and_the_owner(wb):
    db, project, users = wb
    task = lease(db, project, users["ann1"])
    with db.transaction() as conn, pytest.raises(Invalid) as err:
        queue.submit(conn, project, users["ann1"], task.assignment_id, {"pairs": [{"question": "q", "answer": " "}]})
    assert err.value.field == "pairs[0].answer"
    with db.transaction() as conn, pytest.raises(NotFound):
        queue.submit(conn, project, users["ann2"], task.assignment_id, pair("y"))
    submit(db, project, users["ann1"], task)
    with pytest.raises(Conflict, match="already submitted"):
        submit(db, project, users["ann1"], task)


def test_concurrent_leasing_never_overfills_a_record(wb):
    db, project, users = wb
    errors = []

    def work(user):
        try:
            while (task := lease(db, project, user)) is not None:
                submit(db, project, user, task, user.name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(users[n],)) for n in ("ann1", "ann2", "ann3", "rev")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = annotation_rows(db)
    assert len(rows) == 12 and set(Counter(r for r, _ in rows).values()) == {2} and len(set(rows)) == 12


def test_review_versions_conflict_and_rejection_reopens_the_record(wb):
    db, project, users = wb
    task = lease(db, project, users["ann1"])
    ack = submit(db, project, users["ann1"], task, "first")
    ann_id = ack["annotation_id"]
    with db.transaction() as conn:
        with pytest.raises(Forbidden):
            review.review(conn, project, users["ann2"], ann_id, "accept", 1)
        edited = review.edit(conn, project, users["ann1"], ann_id, pair("fixed"), 1)
    assert edited["version"] == 2
    with db.transaction() as conn, pytest.raises(Conflict, match="version 1, it is now version 2"):
        review.review(conn, project, users["rev"], ann_id, "accept", 1)
    with db.transaction() as conn:
        assert review.review(conn, project, users["rev"], ann_id, "reject", 2)["status"] == "rejected"
        with pytest.raises(Forbidden, match="already rejected"):
            review.edit(conn, project, users["ann1"], ann_id, pair("again"), 3)
        # An annotator sees only their own annotations.
        assert review.list_annotations(conn, project, users["ann2"]) == []
        assert [a["id"] for a in review.list_annotations(conn, project, users["rev"])] == [ann_id]
        record = conn.execute(sa.select(schema.records).where(schema.records.c.id == task.record_id)).one()
    assert record.submitted == 0 and record.status == "open"


def test_membership_hides_other_projects(wb):
    db, _, users = wb
    with db.transaction() as conn:
        other = store.create_project(conn, "secret", "label", labels=["a", "b"])
        with pytest.raises(NotFound, match="not a member"):
            store.project_for(conn, "secret", users["ann1"])
        assert [p.name for p in store.projects_for(conn, users["ann1"])] == ["facts"]
        assert {p.name for p in store.projects_for(conn, users["admin"])} == {"facts", "secret"}
        assert store.project_for(conn, other.name, users["admin"]).id == other.id
        with pytest.raises(Forbidden, match="reviewer or admin"):
            store.project_for(conn, "facts", users["ann1"], review=True)


def test_undo_skip_gives_the_task_back_while_its_place_is_free(wb):
    db, project, users = wb
    now = time.time()
    with db.transaction() as conn:
        assert queue.left_for(conn, project, users["ann1"], now=now) == {"left": 6, "total": 6}
    task = lease(db, project, users["ann1"], now=now)
    with db.transaction() as conn:
        queue.skip(conn, project, users["ann1"], task.assignment_id)
        assert queue.left_for(conn, project, users["ann1"], now=now) == {"left": 5, "total": 6}
        back = queue.unskip(conn, project, users["ann1"], task.assignment_id, 600, now=now + 1)
        assert (back.assignment_id, back.record_id, back.expires_at) == (task.assignment_id, task.record_id,
                                                                         now + 601)
        assert queue.left_for(conn, project, users["ann1"], now=now + 1) == {"left": 6, "total": 6}
        with pytest.raises(Conflict, match="was not skipped"):
            queue.unskip(conn, project, users["ann1"], task.assignment_id)
    assert lease(db, project, users["ann1"], now=now + 2).assignment_id == task.assignment_id
    with db.transaction() as conn:
        queue.skip(conn, project, users["ann1"], task.assignment_id)
    for name in ("ann2", "ann3"):  # overlap 2: both places on the record are taken meanwhile
        while (other := lease(db, project, users[name], now=now + 3)).record_id != task.record_id:
            submit(db, project, users[name], other, now=now + 3)
        submit(db, project, users[name], other, now=now + 3)
    with db.transaction() as conn, pytest.raises(Conflict, match="went to other annotators"):
        queue.unskip(conn, project, users["ann1"], task.assignment_id, now=now + 4)
