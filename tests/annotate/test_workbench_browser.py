"""The workbench in a real browser (headless Chromium through Playwright): log in, do every task type by
keyboard, review, export, train a tiny model on the export; injected markup stays inert; CSRF holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import run_cli

from annotune.annotate import db as dbm
from annotune.annotate import importing, schema, store
from annotune.dataset.formats import read_dataset
from annotune.dataset.validate import validate

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
PASSWORD = "browser-pass-1"



def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def workbench(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'wb.db'}"
    db = dbm.open_database(url)
    with db.transaction() as conn:
        users = {n: store.add_user(conn, n, r, PASSWORD) for n, r in
                 [("ann", "annotator"), ("rev", "reviewer"), ("outsider", "annotator"), ("boss", "admin")]}
        specs = {
            "write": ([{"id": "c1", "text": "The X1 weighs 2 kg. " + XSS, "source": {"path": "x1.md"}},
                       {"id": "c2", "text": "The X2 weighs 3 kg."}], {}),
            "correct": ([{"messages": [{"role": "user", "content": "How heavy is the X1?"},
                                       {"role": "assistant", "content": "5 kg."}], "model": "base"},
                         {"messages": [{"role": "user", "content": "Colour?"},
                                       {"role": "assistant", "content": "Blue."}]}], {}),
            "rate": ([{"prompt": "Reset?", "answer": "Hold the button. " + XSS, "model": "m"}], {}),
            "compare": ([{"prompt": "Weight of X2?", "answers": [{"content": "3 kg", "model": "tuned"},
                                                                  {"content": "9 kg", "model": "base"}]},
                         {"prompt": "Colour?", "answers": ["Blue", "Red"]}], {}),
            "label": ([{"id": "t1", "text": "My invoice is wrong"}, {"id": "t2", "text": "It does not boot"}],
                      {"labels": ["billing", "tech"]}),
        }
        for task_type, (rows, extra) in specs.items():
            project = store.create_project(conn, task_type, task_type, f"# {task_type}\nBe **precise**. {XSS}",
                                           overlap=1, **extra)
            store.add_member(conn, project, users["ann"])
            store.add_member(conn, project, users["rev"])
            importing.import_file(conn, project, write_jsonl(tmp_path / f"{task_type}.jsonl", rows))
    server = start_server(url)
    yield server, db
    db.dispose()


def login(browser, server, name):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{server.url}/")
    assert "/login" in page.url  # anonymous visitors are sent to the login page
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.url}/")
    return page


def open_task(page, server, project):
    """From the project page, N leases a task (a POST) and the task page shows it."""
    page.goto(f"{server.url}/p/{project}")
    with page.expect_navigation():
        page.keyboard.press("n")
    assert page.url.endswith(f"/p/{project}/annotate")


def submit_with(page, *keys):
    with page.expect_navigation():
        for key in keys:
            page.keyboard.press(key)


def values(db, project):
    with db.transaction() as conn:
        rows = conn.execute(sa.select(schema.annotations.c.value).join(schema.projects).where(
            schema.projects.c.name == project).order_by(schema.annotations.c.id))
        return [row.value for row in rows]


def test_every_task_type_by_keyboard_then_review_export_and_train(browser, workbench, tiny, tmp_path):
    server, db = workbench
    page = login(browser, server, "ann")

    open_task(page, server, "write")
    page.keyboard.type("How much does the X1 weigh?")  # the first question has the focus
    page.keyboard.press("Tab")
    page.keyboard.type("2 kg.")
    submit_with(page, "Control+Enter")
    page.keyboard.type("How much does the X2 weigh?")
    page.keyboard.press("Tab")
    page.keyboard.type("3 kg.")
    submit_with(page, "Control+Enter")
    assert page.locator("#empty").is_visible()
    assert values(db, "write")[0] == {"pairs": [{"question": "How much does the X1 weigh?", "answer": "2 kg."}]}

    open_task(page, server, "correct")
    page.keyboard.press("Tab")  # from the question to the draft answer
    page.keyboard.press("Control+A")
    page.keyboard.type("2 kg.")
    submit_with(page, "Control+Enter")
    submit_with(page, "Escape", "x")  # reject the second draft
    assert [v["verdict"] for v in values(db, "correct")] == ["edited", "rejected"]
    assert values(db, "correct")[0]["answer"] == "2 kg."

    open_task(page, server, "rate")
    submit_with(page, "Escape", "4", "Enter")
    assert values(db, "rate")[0]["score"] == 4

    open_task(page, server, "compare")
    shown_first = page.locator(".answer-card .text").first.inner_text()
    submit_with(page, "Escape", "1", "Enter")
    submit_with(page, "Escape", "t", "Enter")
    first, second = values(db, "compare")
    assert first["choice"] == (0 if shown_first == "3 kg" else 1)  # the displayed order maps back
    assert second["choice"] == "tie"

    open_task(page, server, "label")
    submit_with(page, "Escape", "1", "Enter")
    submit_with(page, "Escape", "s")  # skip the second text
    assert values(db, "label") == [{"label": "billing"}]
    assert page.locator("#empty").is_visible()

    review = login(browser, server, "rev")
    review.goto(f"{server.url}/p/write/review")
    submit_with(review, "a")
    review.locator("textarea[name=answer_0]").focus()
    review.keyboard.press("Control+A")
    review.keyboard.type("3 kilograms.")
    submit_with(review, "Control+Enter")
    assert review.locator("#empty").is_visible()
    with db.transaction() as conn:
        statuses = [r.status for r in conn.execute(sa.select(schema.annotations.c.status).where(
            schema.annotations.c.project_id == 1).order_by(schema.annotations.c.id))]
    assert statuses == ["accepted", "accepted"]

    review.goto(f"{server.url}/p/write")
    assert "records with 2+ annotations" in review.locator("#agreement").inner_text()
    assert "ann" in review.locator("#per-user").inner_text()
    review.select_option("select[name=to]", "openai")
    with review.expect_download() as download:
        review.click("#export")
    exported = tmp_path / "export.jsonl"
    download.value.save_as(exported)
    report = validate(read_dataset(exported))
    assert report.ok and report.stats.examples == 2
    assert "3 kilograms." in exported.read_text()
    trained = run_cli("train", str(exported), "--model", str(tiny), "--out", str(tmp_path / "run"), "--epochs", "1",
                      "--val-size", "0", "--no-progress")
    assert trained.returncode == 0, trained.stderr


def test_injected_markup_stays_inert(browser, workbench):
    server, _ = workbench
    page = login(browser, server, "ann")
    for project in ("write", "rate"):
        open_task(page, server, project)  # the project page, then the task (leased by a POST)
        assert page.evaluate("window.__xss") is None, project
        assert page.locator("script:not([src])").count() == 0
    assert XSS in page.locator("#record").inner_text()  # shown as text, exactly as imported


def test_forms_need_the_csrf_token_and_projects_their_members(browser, workbench):
    server, _ = workbench
    page = login(browser, server, "ann")
    open_task(page, server, "label")
    action = page.locator("form[data-main-form]").get_attribute("action")
    forged = page.request.post(f"{server.url}{action}", form={"label": "tech"})
    assert forged.status == 403
    outsider = login(browser, server, "outsider")
    outsider.goto(f"{server.url}/p/label")
    assert outsider.locator("#error").inner_text().startswith("no project 'label'")
    failed = browser.new_page()
    failed.goto(f"{server.url}/login")
    failed.fill("input[name=name]", "ann")
    failed.fill("input[name=password]", "wrong-password")
    submit_with(failed, "Enter")
    assert failed.locator("#error").inner_text() == "unknown user or wrong password"


def test_a_stale_edit_gets_a_clear_409_instead_of_overwriting(browser, workbench):
    server, db = workbench
    page = login(browser, server, "ann")
    open_task(page, server, "rate")
    submit_with(page, "Escape", "2", "Enter")
    page.goto(f"{server.url}/p/rate")
    with page.expect_navigation():
        page.keyboard.press("m")
    edit_url = server.url + page.locator("#mine a").first.get_attribute("href")
    first, second = page, page.context.new_page()
    first.goto(edit_url)
    second.goto(edit_url)
    first.keyboard.press("4")
    submit_with(first, "Control+Enter")
    assert "saved" in first.locator(".notice").inner_text()
    second.keyboard.press("5")
    submit_with(second, "Control+Enter")
    assert "changed by ann" in second.locator("#error").inner_text()
    assert values(db, "rate") == [{"score": 4, "comment": ""}]


def test_a_task_is_leased_by_a_post_and_a_link_leases_nothing(browser, workbench):
    server, db = workbench
    page = login(browser, server, "ann")
    page.goto(f"{server.url}/p/label/annotate")  # a link (or a cross-site image) to the task page
    assert page.locator("#next-task").is_visible() and page.locator("#task-form").count() == 0
    with db.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.assignments)).scalar_one() == 0
    with page.expect_navigation():
        page.keyboard.press("n")
    assert page.locator("#task-form").is_visible()
    page.reload()
    assert page.locator("#task-form").is_visible()  # the same lease, shown again
    with db.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.assignments)).scalar_one() == 1
