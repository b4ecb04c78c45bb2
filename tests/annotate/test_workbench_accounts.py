"""Accounts and logins on SQLite and PostgreSQL: token expiry and revocation, disabled and deleted users, role and
membership changes taking effect at once, the login throttle (atomic, per address, same answers for every name,
no lockout of the real user), bounded password hashing, leasing as a POST, log out everywhere, chunked bodies."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
import test_workbench_api
from fastapi.testclient import TestClient
from test_workbench_api import PASSWORDS, client, session

from annotune.annotate import logins, schema, store
from annotune.annotate.logins import HashGate

app_db = test_workbench_api.app_db  # the fixture: users, two projects, tokens


def admin_of(app, tokens) -> TestClient:
    return client(app, tokens["admin"])


def from_address(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000))


def login_as(c: TestClient, name: str, password: str):
    return c.post("/api/login", json={"name": name, "password": password})


# ------------------------------------------------------------------------------------------ item 1: tokens


def test_tokens_expire_and_are_listed_and_revoked_at_once(app_db):
    app, tokens = app_db
    admin = admin_of(app, tokens)
    fresh = admin.post("/api/users/ann1/tokens", json={"label": "script", "days": 1}).json()["token"]
    assert client(app, fresh).get("/api/me").json()["name"] == "ann1"  # now cached
    listed = admin.get("/api/users/ann1/tokens").json()
    assert [t["label"] for t in listed] == ["script", ""] and not any(t["expired"] for t in listed)
    assert all(t["expires_at"] > time.time() + 3600 for t in listed)  # every token has an expiry by default
    # Revoking one token through the server stops it at once, although it is cached.
    revoked = admin.delete("/api/users/ann1/tokens", params={"id": listed[0]["id"]}).json()
    assert revoked == {"revoked": 1}
    assert client(app, fresh).get("/api/me").status_code == 401
    assert client(app, tokens["ann1"]).get("/api/me").status_code == 200
    # An expired token is refused.
    with app.state.db.transaction() as conn:
        conn.execute(schema.api_tokens.update().values(expires_at=time.time() - 1))
    app.state.auth_cache.drop_user(0)  # nothing to drop: the lookup below is not cached for ann2 yet
    assert client(app, tokens["ann2"]).get("/api/me").status_code == 401
    assert admin.get("/api/users/ann2/tokens").json()[0]["expired"] is True
    bad = admin.post("/api/users/ann1/tokens", json={"days": 0})
    assert bad.status_code == 422 and bad.json()["field"] == "days"


def test_a_password_change_revokes_tokens_and_sessions(app_db):
    app, tokens = app_db
    ann = session(app, "ann2")
    app.state.auth_cache.ttl = 0.1
    with app.state.db.transaction() as conn:
        store.set_password(conn, "ann2", "brand-new-pass-2")
        assert store.list_tokens(conn, store.find_user(conn, "ann2")) == []
    time.sleep(0.2)
    assert client(app, tokens["ann2"]).get("/api/me").status_code == 401
    assert ann.get("/api/me").status_code == 401


def test_disabling_stops_the_session_and_tokens_at_once_and_enabling_restores_tokens(app_db):
    app, tokens = app_db
    admin = admin_of(app, tokens)
    ann, by_token = session(app, "ann1"), client(app, tokens["ann1"])
    assert ann.get("/api/me").status_code == 200 and by_token.get("/api/me").status_code == 200  # cached
    changed = admin.patch("/api/users/ann1", json={"disabled": True})
    assert changed.json() == {"name": "ann1", "role": "annotator", "disabled": True}
    assert ann.get("/api/me").status_code == 401 and by_token.get("/api/me").status_code == 401
    refused = login_as(client(app), "ann1", PASSWORDS["ann1"])
    assert refused.status_code == 403 and "disabled" in refused.json()["error"]
    assert login_as(client(app), "ann1", "wrong-password").status_code == 401  # nothing revealed without it
    overview = {u["name"]: u for u in admin.get("/api/users").json()}
    assert overview["ann1"]["disabled"] is True and overview["ann1"]["tokens"] == 1
    admin.patch("/api/users/ann1", json={"disabled": False})
    assert by_token.get("/api/me").status_code == 200
    assert ann.get("/api/me").status_code == 401  # disabling ended the session for good
    # An admin cannot lock themselves out.
    own = admin.patch("/api/users/admin", json={"disabled": True})
    assert own.status_code == 403 and "another admin" in own.json()["error"]


def test_role_changes_and_member_removal_take_effect_at_once(app_db):
    app, tokens = app_db
    admin, ann1 = admin_of(app, tokens), client(app, tokens["ann1"])
    assert ann1.get("/api/projects/mine/stats").status_code == 403  # annotator; the lookup is now cached
    assert admin.patch("/api/users/ann1", json={"role": "reviewer"}).json()["role"] == "reviewer"
    assert ann1.get("/api/projects/mine/stats").status_code == 200
    bad = admin.patch("/api/users/ann1", json={"role": "boss"})
    assert bad.status_code == 422 and bad.json()["field"] == "role"
    removed = admin.delete("/api/projects/mine/members/ann1").json()
    assert removed == {"removed": True, "members": ["rev"]}
    assert ann1.get("/api/projects/mine").status_code == 404
    assert admin.delete("/api/projects/mine/members/ann1").json()["removed"] is False
    assert client(app, tokens["rev"]).delete("/api/projects/mine/members/rev").status_code == 403


def test_a_user_with_annotations_is_disabled_not_deleted(app_db):
    app, tokens = app_db
    admin, ann1 = admin_of(app, tokens), client(app, tokens["ann1"])
    task = ann1.post("/api/projects/mine/next").json()["task"]
    ann1.post(f"/api/projects/mine/tasks/{task['assignment_id']}/submit", json={"value": {"score": 3}})
    refused = admin.delete("/api/users/ann1")
    assert refused.status_code == 409 and "disable" in refused.json()["error"]
    ann2 = client(app, tokens["ann2"])
    assert ann2.get("/api/me").status_code == 200
    assert admin.delete("/api/users/ann2").json() == {"deleted": "ann2"}
    assert ann2.get("/api/me").status_code == 401
    assert "ann2" not in [u["name"] for u in admin.get("/api/users").json()]
    assert client(app, tokens["ann1"]).get("/api/users").status_code == 403


# ------------------------------------------------------------------------------- items 3 and 4: logins


def slow_hashing(monkeypatch, seconds=0.05):
    """Password checks that take a while, as real ones do, counting how many run at once."""
    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    real = store.check_password

    def check(password_hash, password):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(seconds)
            return real(password_hash, password)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(store, "check_password", check)
    return state


def test_parallel_guesses_cannot_pass_the_throttle(app_db, monkeypatch):
    app, _ = app_db
    slow_hashing(monkeypatch)
    app.state.hash_gate = HashGate(slots=4, queue=100)  # let every guess in at once
    with TestClient(app) as c, ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: login_as(c, "ann1", "wrong-guess").status_code, range(16)))
    assert statuses.count(401) == logins.PAIR.free and statuses.count(429) == 16 - logins.PAIR.free


def test_one_address_trying_many_names_is_slowed(app_db):
    app, _ = app_db
    c = from_address(app, "10.0.0.9")
    for i in range(logins.ADDRESS.free):
        assert login_as(c, f"name{i}", "wrong-guess").status_code == 401
    assert login_as(c, "someone-else", "wrong-guess").status_code == 429
    assert login_as(from_address(app, "10.0.0.10"), "ann1", PASSWORDS["ann1"]).status_code == 200


def test_known_and_unknown_names_get_the_same_answers(app_db):
    app, _ = app_db

    def answers(name):
        c = from_address(app, f"10.1.0.{len(name)}")
        out = []
        for _ in range(logins.PAIR.free + 2):
            response = login_as(c, name, "wrong-guess")
            out.append((response.status_code, response.json()))
        return out

    known, unknown = answers("ann1"), answers("nobody-here")
    assert known == unknown
    assert known[-1][0] == 429 and "ann1" not in known[-1][1]["error"]


def test_a_guesser_cannot_lock_the_real_user_out(app_db):
    app, _ = app_db
    home, attacker, elsewhere = (from_address(app, a) for a in ("10.2.0.1", "10.2.0.66", "10.2.0.7"))
    assert login_as(home, "ann1", PASSWORDS["ann1"]).status_code == 200  # home is now a known address
    for _ in range(logins.PAIR.free):
        assert login_as(attacker, "ann1", "wrong-guess").status_code == 401
    assert login_as(attacker, "ann1", PASSWORDS["ann1"]).status_code == 429  # the guesser is slowed ...
    assert login_as(home, "ann1", PASSWORDS["ann1"]).status_code == 200  # ... the user is not
    # Guessing from very many addresses slows the name down, but never for long, and never at home.
    with app.state.db.transaction() as conn:
        conn.execute(schema.login_throttle.update().where(schema.login_throttle.c.key == logins._key("account", "ann1"))
                     .values(failures=10_000, last_failed_at=time.time()))
    assert login_as(home, "ann1", PASSWORDS["ann1"]).status_code == 200
    waited = login_as(elsewhere, "ann1", PASSWORDS["ann1"])
    assert waited.status_code == 429 and int(waited.headers["retry-after"]) <= logins.ACCOUNT.max_wait
    with app.state.db.transaction() as conn:
        conn.execute(schema.login_throttle.update().values(last_failed_at=time.time() - logins.ACCOUNT.max_wait))
    assert login_as(elsewhere, "ann1", PASSWORDS["ann1"]).status_code == 200


def test_concurrent_password_hashing_is_bounded_and_other_requests_stay_served(app_db, monkeypatch):
    app, tokens = app_db
    app.state.hash_gate = HashGate(slots=2, queue=3, retry_after=7)
    release = threading.Event()
    state = slow_hashing(monkeypatch, seconds=0)
    real = store.check_password

    def blocked(password_hash, password):
        release.wait(30)
        return real(password_hash, password)

    monkeypatch.setattr(store, "check_password", blocked)
    with TestClient(app) as c, ThreadPoolExecutor(12) as pool:
        c.headers["authorization"] = f"Bearer {tokens['rev']}"
        flood = [pool.submit(login_as, c, f"user{i}", "guess-word") for i in range(12)]  # one event loop
        deadline = time.time() + 20
        while sum(f.done() for f in flood) < 12 - 5 and time.time() < deadline:
            time.sleep(0.01)
        assert app.state.hash_gate.inside == 5  # two hashing, three waiting: every other login was refused
        assert c.get("/api/me").json()["name"] == "rev"  # an authenticated request is answered meanwhile
        release.set()
        answers = [f.result() for f in flood]
    refused = [a for a in answers if a.status_code == 503]
    assert len(refused) == 7 and refused[0].headers["retry-after"] == "7"
    assert "try again in 7 s" in refused[0].json()["error"]
    assert sorted({a.status_code for a in answers}) == [401, 503]
    assert state["most"] <= 2


# ------------------------------------------------------------------------ item 6 and 7: leases, sessions


def leases(app) -> int:
    with app.state.db.transaction(readonly=True) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.assignments)).scalar_one()


def test_leasing_is_a_post_that_needs_the_csrf_token(app_db):
    app, _ = app_db
    ann = session(app, "ann1")
    by_get = ann.get("/api/projects/mine/next")
    assert by_get.status_code == 405 and "use POST" in by_get.json()["error"]
    assert ann.post("/api/projects/mine/next").status_code == 403  # a session needs the CSRF token
    page = ann.get("/p/mine/annotate", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'id="next-task"' in page.text
    assert ann.post("/p/mine/annotate", headers={"accept": "text/html"}).status_code == 403
    assert leases(app) == 0  # a link, an image or a cross-site form leases nothing
    leased = ann.post("/p/mine/annotate", data={"csrf_token": ann.csrf}, follow_redirects=False)
    assert leased.status_code == 303 and leased.headers["location"] == "/p/mine/annotate"
    assert leases(app) == 1
    shown = ann.get("/p/mine/annotate")
    assert 'id="task-form"' in shown.text and leases(app) == 1  # reloading shows the same task


def test_log_out_everywhere_ends_every_session_and_keeps_tokens(app_db):
    app, tokens = app_db
    laptop, phone = session(app, "ann1"), session(app, "ann1")  # logging in again leaves the old one ...
    assert laptop.get("/api/me").status_code == 200 and phone.get("/api/me").status_code == 200
    ended = phone.post("/api/logout", params={"everywhere": "true"}, headers={"x-csrf-token": phone.csrf})
    assert ended.json() == {"ok": True, "sessions_ended": 2}  # ... until the user ends them all
    assert laptop.get("/api/me").status_code == 401 and phone.get("/api/me").status_code == 401
    assert client(app, tokens["ann1"]).get("/api/me").status_code == 200
    page = session(app, "ann1")
    page.post("/logout", data={"csrf_token": page.csrf, "everywhere": "1"})
    assert page.get("/api/me").status_code == 401


def test_chunked_json_bodies_over_the_limit_get_413(app_db):
    app, tokens = app_db
    big = b'{"name": "ann1", "password": "' + b"x" * 8000 + b'"}'

    def chunks():  # no Content-Length
        yield big[:3000]
        yield big[3000:]

    response = client(app).post("/api/login", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    ann1 = client(app, tokens["ann1"])
    task = ann1.post("/api/projects/mine/next").json()["task"]
    body = b'{"value": {"score": 3, "comment": "' + b"y" * 8000 + b'"}}'
    submit = ann1.post(f"/api/projects/mine/tasks/{task['assignment_id']}/submit", content=iter([body]),
                       headers={"content-type": "application/json"})
    assert submit.status_code == 413
