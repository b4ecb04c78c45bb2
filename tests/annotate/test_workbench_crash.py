"""Many concurrent writers, a SIGKILL of the server, a restart: every acknowledged submit is still there."""

from __future__ import annotations

import json
import threading
import time

import httpx
import sqlalchemy as sa

from annotune.annotate import db as dbm
from annotune.annotate import importing, schema, store

WRITERS = 8


def test_acknowledged_submits_survive_a_killed_server(db_url, start_server, tmp_path):
    db = dbm.open_database(db_url)
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("".join(json.dumps({"id": f"c{i}", "text": f"chunk {i}"}) + "\n" for i in range(2000)))
    with db.transaction() as conn:
        project = store.create_project(conn, "load", "write", overlap=2)
        importing.import_file(conn, project, chunks)
        tokens = []
        for i in range(WRITERS):
            user = store.add_user(conn, f"w{i}", "annotator", "password-1")
            store.add_member(conn, project, user)
            tokens.append(store.create_token(conn, user))

    server = start_server(db_url)
    acknowledged: list[int] = []
    lock, stop = threading.Lock(), threading.Event()

    def writer(token: str) -> None:
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
            while not stop.is_set():
                try:
                    task = http.post("/api/projects/load/next").json()["task"]
                    response = http.post(f"/api/projects/load/tasks/{task['assignment_id']}/submit",
                                         json={"value": {"pairs": [{"question": "q?", "answer": "a"}]}})
                except (httpx.HTTPError, ValueError, TypeError):
                    continue  # the server is gone: nothing was acknowledged
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(response.json()["annotation_id"])

    threads = [threading.Thread(target=writer, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    deadline = time.time() + 60
    while len(acknowledged) < 150 and time.time() < deadline:
        time.sleep(0.05)
    server.kill()  # mid-flight: writers are inside requests
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 150

    restarted = start_server(db_url)
    assert httpx.get(f"{restarted.url}/api/health").json() == {"ok": True}
    with db.transaction() as conn:
        stored = {row.id for row in conn.execute(sa.select(schema.annotations.c.id))}
        per_record = conn.execute(
            sa.select(schema.records.c.submitted, sa.func.count(schema.annotations.c.id))
            .join(schema.annotations, schema.annotations.c.record_id == schema.records.c.id, isouter=True)
            .group_by(schema.records.c.id, schema.records.c.submitted)).all()
    lost = set(acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged submits missing after the crash"
    # Every record's counter agrees with its rows (no half-applied submit) and none is over-filled.
    assert all(submitted == count <= 2 for submitted, count in per_record)
    db.dispose()
