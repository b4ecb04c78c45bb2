"""The real `annotune workbench` commands: users, projects, import, model drafts, stats, export, backup."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from annotune.annotate import db as dbm
from annotune.annotate import queue, review, store


def cli(*args: str, db: str, stdin: str | None = None, ok: bool = True):
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "annotune"), "workbench", *args, "--db", db]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=600, check=False)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'wb.db'}"


def test_users_need_a_password_and_get_clear_errors(sqlite_url, tmp_path):
    no_tty = cli("user", "add", "ann", "--role", "annotator", db=sqlite_url, stdin="", ok=False)
    assert no_tty.returncode != 0 and "pipe it in with --password-stdin" in no_tty.stderr
    short = cli("user", "add", "ann", "--role", "annotator", "--password-stdin", db=sqlite_url, stdin="short\n",
                ok=False)
    assert short.returncode != 0 and "must be at least 8 characters" in short.stderr
    assert "Traceback" not in short.stderr
    assert "added ann (annotator)" in cli("user", "add", "ann", "--role", "annotator", "--password-stdin",
                                         db=sqlite_url, stdin="long-enough\n").stdout
    again = cli("user", "add", "ann", "--role", "annotator", "--password-stdin", db=sqlite_url,
                stdin="long-enough\n", ok=False)
    assert "already exists" in again.stderr
    unknown = cli("project", "add-member", "nope", "ann", db=sqlite_url, ok=False)
    assert unknown.stderr.strip() == "error: no project 'nope'"
    missing = cli("project", "create", "faq", "--type", "write", "--guidelines", str(tmp_path / "guide.md"),
                  db=sqlite_url, ok=False)
    assert missing.stderr.strip() == (f"error: --guidelines: {tmp_path / 'guide.md'}: no such file; check the path; "
                                      "write them as a Markdown file first, or leave out --guidelines")
    assert "faq" not in cli("project", "list", db=sqlite_url).stdout
    bad_db = run_cli("workbench", "stats", "x", "--db", "mysql://localhost/x")
    assert "unsupported database 'mysql'" in bad_db.stderr


def test_tokens_users_and_members_from_the_command_line(sqlite_url):
    for name, role in (("ann", "annotator"), ("rev", "reviewer")):
        cli("user", "add", name, "--role", role, "--password-stdin", db=sqlite_url, stdin=f"{name}-password\n")
    old_form = cli("token", "ann", "--label", "old form", db=sqlite_url)  # `token NAME` still creates one
    assert old_form.stdout.startswith("at_") and "valid 90 days" in old_form.stderr
    weekly = cli("token", "create", "ann", "--days", "7", db=sqlite_url).stdout.strip()
    assert "never expires" in cli("token", "create", "ann", "--never-expires", db=sqlite_url).stderr
    listed = cli("token", "list", "ann", db=sqlite_url).stdout.splitlines()
    assert len(listed) == 3 and "never" in listed[0] and listed[2].split("\t")[1] == "old form"
    cli("token", "revoke", "ann", "--id", listed[1].split("\t")[0], db=sqlite_url)
    db = dbm.open_database(sqlite_url)
    with db.transaction() as conn:
        assert store.user_for_token(conn, weekly) is None
        assert store.user_for_token(conn, old_form.stdout.strip()).name == "ann"
    assert "give the token's --id" in cli("token", "revoke", "ann", db=sqlite_url, ok=False).stderr
    assert "revoked 2 token(s)" in cli("token", "revoke", "ann", "--all", db=sqlite_url).stdout
    fresh = cli("token", "create", "ann", db=sqlite_url).stdout.strip()
    cli("user", "role", "ann", "reviewer", db=sqlite_url)
    assert "disabled" in cli("user", "disable", "ann", db=sqlite_url).stdout
    assert cli("user", "list", db=sqlite_url).stdout.splitlines()[0] == "ann\treviewer\tdisabled\t1 token(s)"
    with db.transaction() as conn:
        assert store.user_for_token(conn, fresh) is None  # a disabled user's token does not work
    cli("user", "enable", "ann", db=sqlite_url)
    with db.transaction() as conn:
        assert store.user_for_token(conn, fresh).role == "reviewer"
    cli("user", "password", "ann", "--password-stdin", db=sqlite_url, stdin="a-new-password\n")
    with db.transaction() as conn:
        assert store.user_for_token(conn, fresh) is None  # a new password revokes the tokens
    cli("project", "create", "p", "--type", "write", db=sqlite_url)
    cli("project", "add-member", "p", "ann", "rev", db=sqlite_url)
    assert cli("project", "remove-member", "p", "ann", db=sqlite_url).stdout.strip() == "ann: removed from p"
    with db.transaction() as conn:
        assert store.member_names(conn, store.find_project(conn, "p")) == ["rev"]
    assert "deleted" in cli("user", "delete", "rev", db=sqlite_url).stdout
    assert [line.split("\t")[0] for line in cli("user", "list", db=sqlite_url).stdout.splitlines()] == ["ann"]
    db.dispose()


def test_from_chunks_to_drafts_to_a_trained_model(sqlite_url, tiny, tmp_path):
    for name, role in (("boss", "admin"), ("ann1", "annotator"), ("ann2", "annotator"), ("rev", "reviewer")):
        cli("user", "add", name, "--role", role, "--password-stdin", db=sqlite_url, stdin=f"{name}-password\n")
    guidelines = tmp_path / "guide.md"
    guidelines.write_text("# How to write\nAsk what a **customer** would ask.")
    cli("project", "create", "faq", "--type", "write", "--overlap", "2", "--guidelines", str(guidelines),
        db=sqlite_url)
    cli("project", "add-member", "faq", "ann1", "ann2", "rev", db=sqlite_url)
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("".join(json.dumps({"id": f"c{i}", "text": f"The model {i} has {i + 2} fans.",
                                          "source": {"path": "specs.md", "position": {"chunk": i}}}) + "\n"
                              for i in range(4)))
    assert "imported 4 record(s) into faq (0 already there)" in cli("import", "faq", str(chunks), db=sqlite_url).stdout
    assert "imported 0 record(s) into faq (4 already there)" in cli("import", "faq", str(chunks), db=sqlite_url).stdout

    drafted = cli("suggest", "faq", "--model", str(tiny), "--max-new-tokens", "12", "--limit", "2", db=sqlite_url)
    assert "record(s) got drafts from" in drafted.stdout
    assert "drafting:" in drafted.stderr  # the progress bar, shown unless --no-progress
    quiet = cli("suggest", "faq", "--model", str(tiny), "--max-new-tokens", "12", "--no-progress", db=sqlite_url)
    assert "record(s) got drafts from" in quiet.stdout and "drafting:" not in quiet.stderr
    db = dbm.open_database(sqlite_url)
    with db.transaction() as conn:
        project = store.find_project(conn, "faq")
        users = {n: store.find_user(conn, n) for n in ("ann1", "ann2", "rev")}
        task = queue.next_task(conn, project, users["ann1"])
    # The tiny model writes noise; whatever it wrote is marked with its name, never as an annotator's work.
    suggestion = task.payload.get("suggestion")
    assert suggestion is None or suggestion["model"] == tiny.name

    for name in ("ann1", "ann2"):
        while True:
            with db.transaction() as conn:
                task = queue.next_task(conn, project, users[name])
                if task is None:
                    break
                fans = task.payload["context"].split(" has ")[1]
                queue.submit(conn, project, users[name], task.assignment_id, {"pairs": [
                    {"question": f"How many fans does {task.payload['context'][4:11]} have?", "answer": fans},
                    *([{"question": f"Is {task.payload['context'][4:11]} loud?", "answer": "No."}] if name == "ann2" else [])]})
    with db.transaction() as conn:
        for item in review.list_annotations(conn, project, users["rev"], status="pending"):
            review.review(conn, project, users["rev"], item["id"], "accept", item["version"])
    db.dispose()

    text = cli("stats", "faq", db=sqlite_url).stdout
    assert "records: 4 (4 done, 0 open, 0 waiting for drafts)" in text and "text similarity" in text
    as_json = json.loads(cli("stats", "faq", "--json", db=sqlite_url).stdout)
    assert as_json["progress"]["per_user"]["ann1"]["accepted"] == 4

    out = tmp_path / "train.jsonl"
    assert "wrote 8 example(s)" in cli("export", "faq", "--to", "openai", "--out", str(out), db=sqlite_url).stdout
    assert run_cli("data", "validate", str(out)).returncode == 0
    trained = run_cli("train", str(out), "--model", str(tiny), "--out", str(tmp_path / "run"), "--epochs", "1",
                      "--val-size", "0", "--no-progress")
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "adapter").is_dir()


@pytest.mark.parametrize("damage,expected", [
    (lambda row: row.pop("name"), "this users row cannot be restored ("),
    (lambda row: row.update(colour="red"), "users has no column 'colour'; the file is damaged or comes from a newer"),
    (lambda row: row.update(created_at="yesterday"), "this users row cannot be restored ("),
])
def test_a_damaged_backup_row_is_a_clear_error_and_restores_nothing(sqlite_url, db_url, tmp_path, damage,
                                                                     expected):
    cli("user", "add", "ann", "--role", "annotator", "--password-stdin", db=sqlite_url, stdin="long-enough\n")
    cli("project", "create", "faq", "--type", "write", db=sqlite_url)
    backup = tmp_path / "backup.jsonl"
    cli("backup", str(backup), db=sqlite_url)
    lines = backup.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, start=1) if '"table": "users"' in line)
    item = json.loads(lines[number - 1])
    damage(item["row"])
    lines[number - 1] = json.dumps(item)
    backup.write_text("\n".join(lines) + "\n")
    target = db_url  # an empty SQLite or PostgreSQL database
    failed = cli("restore", str(backup), db=target, ok=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith(f"error: {backup}:{number}: ") and expected in failed.stderr, failed.stderr
    assert cli("project", "list", db=target).stdout == ""  # the projects line after it was not kept either


def test_backup_restores_into_postgresql(sqlite_url, postgres_server, tmp_path):
    db = dbm.open_database(sqlite_url)
    with db.transaction() as conn:
        user = store.add_user(conn, "ann", "annotator", "password-1")
        project = store.create_project(conn, "labels", "label", "Pick one", ["a", "b"])
        store.add_member(conn, project, user)
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "first"}\n{"text": "second"}\n')
    cli("import", "labels", str(texts), db=sqlite_url)
    with db.transaction() as conn:
        task = queue.next_task(conn, project, user)
        queue.submit(conn, project, user, task.assignment_id, {"label": "b"})
    db.dispose()
    backup = tmp_path / "backup.jsonl"
    assert "backed up" in cli("backup", str(backup), db=sqlite_url).stdout

    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE restored")
    target = postgres_server.rsplit("/", 1)[0] + "/restored"
    cli("restore", str(backup), db=target)
    assert "already holds users" in cli("restore", str(backup), db=target, ok=False).stderr
    restored = json.loads(cli("stats", "labels", "--json", db=target).stdout)
    original = json.loads(cli("stats", "labels", "--json", db=sqlite_url).stdout)
    assert restored == original and restored["progress"]["annotations"]["pending"] == 1
    # New rows get fresh ids after a restore (sequences moved past the restored ids).
    cli("user", "add", "new", "--role", "annotator", "--password-stdin", db=target, stdin="password-2\n")


def test_serve_with_several_worker_processes(sqlite_url, start_server, tmp_path):
    import httpx

    db = dbm.open_database(sqlite_url)
    with db.transaction() as conn:
        user = store.add_user(conn, "ann", "annotator", "password-1")
        project = store.create_project(conn, "labels", "label", labels=["a", "b"])
        store.add_member(conn, project, user)
        token = store.create_token(conn, user)
    db.dispose()
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(6)))
    cli("import", "labels", str(texts), db=sqlite_url)
    server = start_server(sqlite_url, "--workers", "2")
    assert "2 worker processes" in server.log_path.read_text()
    headers = {"authorization": f"Bearer {token}"}
    done = 0
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        while (task := http.post("/api/projects/labels/next").json()["task"]) is not None:
            response = http.post(f"/api/projects/labels/tasks/{task['assignment_id']}/submit",
                                 json={"value": {"label": "a"}})
            assert response.status_code == 200
            done += 1
    assert done == 6


def test_database_and_file_mistakes_are_clear_errors_that_create_nothing(tmp_path, monkeypatch):
    def error(*args: str, db: str, stdin: str | None = None) -> str:
        result = cli(*args, db=db, stdin=stdin, ok=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        return result.stderr.strip()

    missing = tmp_path / "typo" / "wb.db"
    assert error("user", "list", db=f"sqlite:///{missing}") == (
        f"error: no workbench database at {missing}; check --db or $ANNOTUNE_DB, or create one with "
        "`annotune workbench user add` or `annotune workbench serve`")
    assert not missing.parent.exists()
    assert "is an in-memory database" in error("stats", "p", db="sqlite://")
    not_db = tmp_path / "notes.txt"
    not_db.write_text("just text, not a database\n" * 100)
    assert "file is not a database; check the path" in error("stats", "p", db=f"sqlite:///{not_db}")
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    assert error("user", "add", "ann", "--role", "annotator", "--password-stdin", db=f"sqlite:///{blocked}/wb.db",
                 stdin="long-enough\n") == f"error: {blocked}: {blocked} is a file where a folder is needed; " \
                                           "choose another path"

    # restore checks the file before it creates the database, so a bad file leaves nothing behind
    target = tmp_path / "restored.db"
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"annotune_backup": 1\n')
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00binary")
    for path, expected in ((tmp_path / "none.jsonl", "cannot read it (No such file or directory)"),
                           (tmp_path, "is a folder; give the backup file inside it"),
                           (bad_json, "1: not valid JSON"), (binary, "1: not UTF-8 text (byte 0)")):
        assert expected in error("restore", str(path), db=f"sqlite:///{target}")
        assert not target.exists()

    url = f"sqlite:///{tmp_path / 'wb.db'}"
    cli("user", "add", "ann", "--role", "annotator", "--password-stdin", db=url, stdin="long-enough\n")
    assert error("backup", str(tmp_path), db=url) == (f"error: {tmp_path} is a folder; give the backup file's "
                                                      f"path, e.g. {tmp_path / 'workbench-backup.jsonl'}")
    assert error("backup", str(blocked / "b.jsonl"), db=url).endswith("is a file where a folder is needed; "
                                                                      "choose another path")
    assert "only label projects have labels" in error("project", "create", "w", "--type", "write", "--labels", "a,b",
                                                      db=url)
    cli("project", "create", "w", "--type", "write", db=url)
    assert "is a folder; import a file from it" in error("import", "w", str(tmp_path), db=url)
    assert "min_score: only applies to rate projects" in error("export", "w", "--to", "openai", "--out",
                                                                  str(tmp_path / "o.jsonl"), "--min-score", "3",
                                                                  db=url)
    monkeypatch.delenv("ANNOTUNE_TOKEN", raising=False)
    assert "--url needs an API token in $ANNOTUNE_TOKEN" in run_cli("workbench", "stats", "w", "--url",
                                                                    "http://127.0.0.1:9").stderr
    monkeypatch.setenv("ANNOTUNE_TOKEN", "at_x")
    assert "give either --url" in error("stats", "w", "--url", "http://127.0.0.1:9", db=url)
    for option, value, expected in (("--port", "99999", "must be a TCP port from 1 to 65535"),
                                    ("--lease-minutes", "0", "must be more than 0 minutes")):
        result = cli("serve", option, value, db=url, ok=False)
        assert result.returncode == 2 and expected in result.stderr


def test_a_port_in_use_is_a_clear_error_that_creates_nothing(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), db=f"sqlite:///{tmp_path / 'new.db'}", ok=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"port {port} on 127.0.0.1 is already in use; pick another with --port" in result.stderr
    assert "workbench on" not in result.stdout and not (tmp_path / "new.db").exists()


def test_a_test_server_whose_port_was_taken_starts_on_another(sqlite_url, tmp_path):
    import socket

    from workbench_fixtures import Server

    with socket.socket() as taken:  # as if another test process took the chosen port in between
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = Server(["workbench", "serve", "--db", sqlite_url], tmp_path / "server.log")
        server.port = taken.getsockname()[1]
        server.url = f"http://127.0.0.1:{server.port}"
        server.start()
        try:
            assert server.port != taken.getsockname()[1]
            assert "already in use" in (tmp_path / "server.log").read_text()
        finally:
            server.stop()


def _write_project(url: str, name: str) -> None:
    db = dbm.open_database(url, create=True)
    with db.transaction() as conn:
        store.create_project(conn, name, "write", "")
    db.dispose()


def test_import_reads_what_ingest_writes(sqlite_url, tmp_path):
    # ingest keeps U+2028 inside chunk text, and editors may add a byte-order mark: both import as they are
    _write_project(sqlite_url, "faq")
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("\ufeff" + json.dumps({"id": "c1", "text": "First line\u2028second line."}, ensure_ascii=False)
                      + "\n", encoding="utf-8")
    assert "imported 1 record(s) into faq" in cli("import", "faq", str(chunks), db=sqlite_url).stdout
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n{"text": "also ok"}\n{oops\n')
    result = cli("import", "faq", str(broken), db=sqlite_url, ok=False)
    assert result.returncode != 0 and "broken.jsonl:2:json: invalid JSON" in result.stderr
    assert "broken.jsonl:4:json: invalid JSON" in result.stderr


def test_reimporting_records_without_ids_adds_nothing(sqlite_url, tmp_path):
    _write_project(sqlite_url, "faq")
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("".join(json.dumps({"text": f"Chunk {i} has no id."}) + "\n" for i in range(3)))
    assert "imported 3 record(s) into faq (0 already there)" in cli("import", "faq", str(chunks), db=sqlite_url).stdout
    more = tmp_path / "more.jsonl"
    more.write_text(chunks.read_text() + json.dumps({"text": "A new one."}) + "\n"
                    + json.dumps({"text": "A new one."}) + "\n")
    assert "imported 1 record(s) into faq (4 already there)" in cli("import", "faq", str(more), db=sqlite_url).stdout


def test_a_new_sqlite_database_is_private_to_its_owner(tmp_path):
    import os
    import stat

    url = f"sqlite:///{tmp_path / 'new.db'}"
    db = dbm.open_database(url, create=True)
    with db.transaction() as conn:
        store.add_user(conn, "ann", "annotator", "password-1")
    db.dispose()
    assert stat.S_IMODE(os.stat(tmp_path / "new.db").st_mode) == 0o600
