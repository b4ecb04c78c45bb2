"""The JSON API and its security: authentication, CSRF, membership, roles, limits, throttling, conflicts."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from annotune.annotate import db as dbm
from annotune.annotate import logins, store
from annotune.annotate.app import Settings, create_app

PASSWORDS = {"admin": "admin-pass-1", "ann1": "ann1-pass-1", "ann2": "ann2-pass-1", "rev": "rev-pass-1"}


@pytest.fixture
def app_db(db_url, tmp_path):
    db = dbm.open_database(db_url)
    with db.transaction() as conn:
        users = {n: store.add_user(conn, n, r, PASSWORDS[n]) for n, r in
                 [("admin", "admin"), ("ann1", "annotator"), ("ann2", "annotator"), ("rev", "reviewer")]}
        mine = store.create_project(conn, "mine", "rate", overlap=1)
        theirs = store.create_project(conn, "theirs", "label", labels=["good", "bad"])
        for name in ("ann1", "rev"):
            store.add_member(conn, mine, users[name])
        store.add_member(conn, theirs, users["ann2"])
        tokens = {n: store.create_token(conn, u) for n, u in users.items()}
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": f"a{i}", "prompt": f"Question {i}?", "answer": f"Answer {i}.",
                                           "model": "m1"}) + "\n" for i in range(4)))
    labels = tmp_path / "texts.jsonl"
    labels.write_text("".join(json.dumps({"id": f"t{i}", "text": f"Text {i}"}) + "\n" for i in range(3)))
    app = create_app(db=db, settings=Settings(max_upload=4096))
    with TestClient(app) as admin:
        admin.headers["authorization"] = f"Bearer {tokens['admin']}"
        assert admin.post("/api/projects/mine/import", content=answers.read_bytes()).json()["added"] == 4
        assert admin.post("/api/projects/theirs/import", content=labels.read_bytes()).json()["added"] == 3
    yield app, tokens
    db.dispose()


def client(app, token=None) -> TestClient:
    c = TestClient(app)
    if token:
        c.headers["authorization"] = f"Bearer {token}"
    return c


def session(app, name) -> TestClient:
    c = TestClient(app)
    body = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]}).json()
    c.csrf = body["csrf_token"]
    return c


def test_anonymous_requests_get_401_and_pages_send_to_login(app_db):
    app, _ = app_db
    anon = client(app)
    for method, path in [("GET", "/api/projects"), ("POST", "/api/projects/mine/next"),
                         ("GET", "/api/projects/mine/export"), ("POST", "/api/projects/mine/tasks/1/submit"),
                         ("GET", "/api/me")]:
        response = anon.request(method, path, json={"value": {}})
        assert response.status_code == 401, path
        assert "log in" in response.json()["error"]
    page = anon.get("/p/mine", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client(app, "at_not-a-token").get("/api/projects").status_code == 401


def test_csrf_is_required_for_session_requests_but_not_for_tokens(app_db):
    app, tokens = app_db
    ann = session(app, "ann1")
    task = ann.post("/api/projects/mine/next", headers={"x-csrf-token": ann.csrf}).json()["task"]
    url = f"/api/projects/mine/tasks/{task['assignment_id']}/submit"
    refused = ann.post(url, json={"value": {"score": 4}})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert ann.post(url, json={"value": {"score": 4}}, headers={"x-csrf-token": "wrong"}).status_code == 403
    # A form post from a page without the token is refused too.
    form = ann.post(f"/p/mine/tasks/{task['assignment_id']}/skip", data={}, follow_redirects=False)
    assert form.status_code == 403
    assert ann.post(url, json={"value": {"score": 4}}, headers={"x-csrf-token": ann.csrf}).status_code == 200
    by_token = client(app, tokens["ann1"])
    next_task = by_token.post("/api/projects/mine/next").json()["task"]
    ok = by_token.post(f"/api/projects/mine/tasks/{next_task['assignment_id']}/submit", json={"value": {"score": 2}})
    assert ok.status_code == 200 and ok.json()["version"] == 1


def test_an_annotator_cannot_read_change_or_export_another_project(app_db):
    app, tokens = app_db
    ann2 = client(app, tokens["ann2"])
    theirs_task = ann2.post("/api/projects/theirs/next").json()["task"]
    ann1 = client(app, tokens["ann1"])
    assert [p["name"] for p in ann1.get("/api/projects").json()] == ["mine"]
    for method, path, body in [
        ("GET", "/api/projects/theirs", None), ("POST", "/api/projects/theirs/next", None),
        ("GET", "/api/projects/theirs/annotations", None), ("GET", "/api/projects/theirs/export", None),
        ("GET", "/api/projects/theirs/stats", None),
        ("POST", f"/api/projects/theirs/tasks/{theirs_task['assignment_id']}/submit", {"value": {"label": "good"}}),
    ]:
        response = ann1.request(method, path, json=body)
        assert response.status_code == 404, path
    # Nor through their own project's URL with the other project's task id.
    wrong = ann1.post(f"/api/projects/mine/tasks/{theirs_task['assignment_id']}/submit", json={"value": {"score": 1}})
    assert wrong.status_code == 404
    # Export, statistics and import need more than the annotator role even in their own project.
    assert ann1.get("/api/projects/mine/export").status_code == 403
    assert ann1.get("/api/projects/mine/stats").status_code == 403
    assert ann1.post("/api/projects/mine/import", content=b'{"text": "x"}\n').status_code == 403
    assert ann1.post("/api/projects", json={"name": "x", "task_type": "write"}).status_code == 403


def test_values_are_checked_per_field(app_db):
    app, tokens = app_db
    ann1 = client(app, tokens["ann1"])
    task = ann1.post("/api/projects/mine/next").json()["task"]
    assert task["payload"]["answer"].startswith("Answer")
    url = f"/api/projects/mine/tasks/{task['assignment_id']}/submit"
    for value, field in [({"score": 6}, "score"), ({"score": "high"}, "score"), ("5", "value")]:
        response = ann1.post(url, json={"value": value})
        assert response.status_code == 422 and response.json()["field"] == field, value
    ann2 = client(app, tokens["ann2"])
    label_task = ann2.post("/api/projects/theirs/next").json()["task"]
    bad = ann2.post(f"/api/projects/theirs/tasks/{label_task['assignment_id']}/submit",
                    json={"value": {"label": "ugly"}})
    assert bad.status_code == 422 and "good, bad" in bad.json()["error"]


def test_stale_edits_get_409_with_a_clear_message(app_db):
    app, tokens = app_db
    ann1, rev = client(app, tokens["ann1"]), client(app, tokens["rev"])
    task = ann1.post("/api/projects/mine/next").json()["task"]
    ack = ann1.post(f"/api/projects/mine/tasks/{task['assignment_id']}/submit", json={"value": {"score": 3}}).json()
    path = f"/api/projects/mine/annotations/{ack['annotation_id']}"
    assert ann1.put(path, json={"value": {"score": 4}, "version": 1}).json()["version"] == 2
    stale = rev.post(path + "/review", json={"decision": "edit", "version": 1, "value": {"score": 5}})
    assert stale.status_code == 409
    assert "changed by ann1" in stale.json()["error"] and "now version 2" in stale.json()["error"]
    assert ann1.get(path).json()["value"]["score"] == 4  # nothing overwritten
    accepted = rev.post(path + "/review", json={"decision": "accept", "version": 2})
    assert accepted.json() == {"id": ack["annotation_id"], "version": 3, "status": "accepted"}


def test_upload_size_is_limited(app_db):
    app, tokens = app_db
    admin = client(app, tokens["admin"])
    big = b"".join(json.dumps({"prompt": "p" * 100, "answer": "a"}).encode() + b"\n" for _ in range(100))
    response = admin.post("/api/projects/mine/import", content=big)
    assert response.status_code == 413 and "upload limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield big

    assert admin.post("/api/projects/mine/import", content=chunks()).status_code == 413


def test_repeated_failed_logins_are_slowed(app_db):
    app, _ = app_db
    c = client(app)
    for _ in range(logins.PAIR.free):
        assert c.post("/api/login", json={"name": "ann1", "password": "wrong-guess"}).status_code == 401
    throttled = c.post("/api/login", json={"name": "ann1", "password": PASSWORDS["ann1"]})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    # Unknown names answer like wrong passwords.
    unknown = c.post("/api/login", json={"name": "nobody", "password": "whatever-1"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "unknown user or wrong password"


def test_bad_imports_list_every_problem_and_write_nothing(app_db, tmp_path):
    app, tokens = app_db
    admin = client(app, tokens["admin"])
    body = b'{"prompt": "ok?", "answer": "fine"}\n{"answer": "no prompt"}\n{"prompt": "x", "answers": [1]}\n'
    response = admin.post("/api/projects/mine/import", content=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert ":2:prompt" in error and ":3:answers" in error and "nothing imported" in error
    stats = admin.get("/api/projects/mine/stats").json()
    assert stats["progress"]["records"]["total"] == 4


def test_responses_carry_security_headers(app_db):
    app, _ = app_db
    response = client(app).get("/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_logout_ends_the_session_at_once_and_removed_sessions_within_the_cache_time(app_db):
    app, _ = app_db
    ann = session(app, "ann1")
    assert ann.get("/api/me").json()["name"] == "ann1"
    assert ann.post("/api/logout", headers={"x-csrf-token": ann.csrf}).status_code == 200
    assert ann.get("/api/me").status_code == 401
    # A password change from the CLI (another process) deletes the sessions; the cache forgets them soon.
    app.state.auth_cache.ttl = 0.2
    other = session(app, "ann2")
    assert other.get("/api/me").status_code == 200
    with app.state.db.transaction() as conn:
        store.set_password(conn, "ann2", "new-password-2")
    time.sleep(0.3)
    assert other.get("/api/me").status_code == 401


def test_admins_import_through_the_project_page(app_db):
    app, _ = app_db
    admin = session(app, "admin")
    upload = {"file": ("more.jsonl", b'{"id": "b1", "prompt": "New?", "answer": "Yes."}\n', "application/x-ndjson")}
    response = admin.post("/p/mine/import", files=upload, data={"csrf_token": admin.csrf, "kind": "auto"},
                          follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/p/mine?notice=imported&added=1&already=0&drafts=0"
    assert "imported 1 record(s) (0 already there" in admin.get(response.headers["location"]).text
    assert admin.get("/api/projects/mine/stats").json()["progress"]["records"]["total"] == 5
    forged = admin.post("/p/mine/import", files=upload, data={"kind": "auto"}, follow_redirects=False)
    assert forged.status_code == 403


def test_numbers_beyond_64_bits_get_422_not_500(app_db):
    app, tokens = app_db
    ann = client(app, tokens["ann1"])
    huge = 2 ** 70
    for method, path, body in (("POST", f"/api/projects/mine/tasks/{huge}/submit", {"value": {"score": 3}}),
                               ("POST", f"/api/projects/mine/tasks/{huge}/skip", None),
                               ("GET", f"/api/projects/mine/annotations?offset={huge}", None),
                               ("GET", f"/api/projects/mine/annotations/{huge}", None)):
        response = ann.request(method, path, json=body)
        assert response.status_code == 422, (path, response.status_code, response.text)
        assert "out of range" in response.json()["error"]


def test_notices_come_from_codes_not_from_the_url(app_db):
    app, _ = app_db
    page = client(app).get("/login?message=Your+account+is+locked.+Call+0800+123&notice=imported&added=x")
    assert page.status_code == 200
    assert "account is locked" not in page.text and 'class="notice"' not in page.text
    shown = client(app).get("/login?notice=imported&added=3&already=1&drafts=0").text
    assert "imported 3 record(s) (1 already there, 0 waiting for drafts)" in shown
    assert 'class="notice"' not in client(app).get("/login?notice=saved&id=<b>1</b>").text


def test_an_internal_error_is_one_line_with_the_security_headers(app_db, monkeypatch):
    from annotune.annotate import api

    app, tokens = app_db

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(api.stats, "project_stats", broken)
    c = TestClient(app, raise_server_exceptions=False)
    c.headers["authorization"] = f"Bearer {tokens['admin']}"
    response = c.get("/api/projects/mine/stats")
    assert response.status_code == 500 and response.json() == {"error": "internal error; the server's log has the details"}
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_login_csrf_cookie_follows_secure_cookies(db_url):
    db = dbm.open_database(db_url)
    for secure in (False, True):
        app = create_app(db=db, settings=Settings(secure_cookies=secure))
        cookie = client(app).get("/login").headers["set-cookie"]
        assert cookie.startswith("annotune_login_csrf=") and ("; secure" in cookie.lower()) == secure
    db.dispose()


def test_an_import_nested_too_deeply_is_a_clear_error(app_db):
    app, tokens = app_db
    roomy = create_app(db=app.state.db)  # the default upload limit, not the fixture's 4 KiB
    deep = ('{"text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}\n").encode()
    response = client(roomy, tokens["admin"]).post("/api/projects/theirs/import", content=deep)
    assert response.status_code == 422 and "1:json: the JSON is nested too deeply" in response.json()["error"]


def test_request_validation_errors_have_the_one_error_shape(app_db):
    from annotune.annotate.client import Client
    from annotune.annotate.errors import Invalid

    app, tokens = app_db
    admin = client(app, tokens["admin"])
    missing = admin.post("/api/projects", json={"task_type": "write"})
    assert missing.status_code == 422 and missing.json() == {"error": "name: this field is required", "field": "name"}
    wrong = admin.get("/api/projects/mine/annotations?limit=lots")
    assert wrong.status_code == 422 and wrong.json()["field"] == "limit" and "detail" not in wrong.json()
    api = Client("http://testserver", token=tokens["admin"])
    api.http = admin  # the API client over the in-process app
    with pytest.raises(Invalid) as err:
        api._call("POST", "/api/projects", json={"task_type": "write"})
    assert err.value.field == "name"


def test_uploads_keep_their_own_name_in_problems_and_sources(app_db, db_url, tmp_path):
    import sqlalchemy as sa

    from annotune.annotate import schema

    app, tokens = app_db
    admin = client(app, tokens["admin"])
    conversations = tmp_path / "faq-round-2.jsonl"
    conversations.write_text(json.dumps({"messages": [{"role": "user", "content": "Q?"},
                                                      {"role": "assistant", "content": "A."}]}) + "\n")
    added = admin.post("/api/projects/mine/import", params={"filename": "faq-round-2.jsonl"},
                       content=conversations.read_bytes())
    assert added.status_code == 200 and added.json()["added"] == 1
    broken = admin.post("/api/projects/mine/import", params={"filename": "../../etc/broken.jsonl"},
                        content=b'{"prompt": "ok", "answer": "a"}\n{oops\n')
    assert broken.status_code == 422
    message = broken.json()["error"]
    assert message.startswith("broken.jsonl: 1 problem(s)") and "broken.jsonl:2:json: invalid JSON" in message
    assert "annotune-import-" not in message and "/etc/" not in message
    db = dbm.open_database(db_url)
    with db.transaction() as conn:
        sources = [row.source for row in conn.execute(sa.select(schema.records.c.source)) if row.source]
    db.dispose()
    assert {"path": "faq-round-2.jsonl", "location": "faq-round-2.jsonl:1"} in sources


def test_error_pages_link_back_for_real_and_the_api_is_described(app_db):
    app, tokens = app_db
    ann = session(app, "ann1")
    page = ann.get("/p/theirs", headers={"accept": "text/html", "referer": "http://testserver/p/mine?x=1"})
    assert page.status_code == 404 and "javascript:" not in page.text  # not a member: no such project for ann1
    assert 'href="/p/mine?x=1" id="back"' in page.text
    elsewhere = ann.get("/p/theirs", headers={"accept": "text/html", "referer": "https://evil.example/p/mine"})
    assert 'id="back"' not in elsewhere.text and "evil.example" not in elsewhere.text
    assert client(app).get("/api/docs").status_code == 404
    described = client(app).get("/api/openapi.json")
    assert described.status_code == 200 and "/api/projects/{name}/import" in described.json()["paths"]


def test_the_review_queue_leases_through_the_api_and_refuses_self_review(app_db):
    app, tokens = app_db
    ann1, rev, admin = (client(app, tokens[n]) for n in ("ann1", "rev", "admin"))
    task = ann1.post("/api/projects/mine/next").json()["task"]
    done = ann1.post(f"/api/projects/mine/tasks/{task['assignment_id']}/submit", json={"value": {"score": 4}})
    annotation_id = done.json()["annotation_id"]
    assert ann1.post("/api/projects/mine/review/next").status_code == 403  # annotators do not review
    leased = rev.post("/api/projects/mine/review/next").json()["annotation"]
    assert leased["id"] == annotation_id and leased["review_lease_expires"] > time.time()
    assert admin.post("/api/projects/mine/review/next").json() == {"annotation": None}  # rev holds it
    assert rev.post(f"/api/projects/mine/annotations/{annotation_id}/release").json() == {"ok": True}
    assert admin.post("/api/projects/mine/review/next").json()["annotation"]["id"] == annotation_id
    # an admin who annotates is not their own reviewer unless the project allows it
    own = admin.post("/api/projects/mine/next").json()["task"]
    own_id = admin.post(f"/api/projects/mine/tasks/{own['assignment_id']}/submit",
                        json={"value": {"score": 2}}).json()["annotation_id"]
    refused = admin.post(f"/api/projects/mine/annotations/{own_id}/review", json={"decision": "accept", "version": 1})
    assert refused.status_code == 403 and "is your own" in refused.json()["error"]
    assert admin.patch("/api/projects/mine", json={"self_review": True}).json()["self_review"] is True
    allowed = admin.post(f"/api/projects/mine/annotations/{own_id}/review", json={"decision": "accept", "version": 1})
    assert allowed.json()["status"] == "accepted"
