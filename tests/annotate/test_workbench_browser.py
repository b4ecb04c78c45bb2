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
    assert review.locator("#waiting").inner_text().startswith("2 annotation(s) waiting for you")
    submit_with(review, "n")  # taking the next one is a POST: it leases the annotation to this reviewer
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


def annotate_directly(db, project_name, user_name, value):
    """Lease and submit a task as ``user_name`` in the database, the way a page submit does."""
    from annotune.annotate import queue

    with db.transaction() as conn:
        project, user = store.find_project(conn, project_name), store.find_user(conn, user_name)
        task = queue.next_task(conn, project, user)
        return queue.submit(conn, project, user, task.assignment_id, value)["annotation_id"]


def test_reviewers_and_editors_see_every_pair_the_verdict_and_the_changes(browser, workbench):
    server, db = workbench
    pairs = [{"question": f"Question number {i}?", "answer": f"Answer number {i}."} for i in range(5)]
    annotate_directly(db, "write", "ann", {"pairs": pairs})
    annotate_directly(db, "correct", "ann", {"verdict": "rejected", "reason": "the weight is wrong"})
    annotate_directly(db, "correct", "ann", {"verdict": "edited", "question": "Colour?", "answer": "Dark blue."})

    page = login(browser, server, "ann")
    page.goto(f"{server.url}/p/write/mine")
    assert "Question number 4?" in page.locator("#mine").inner_text()  # the text, not just an id
    page.click("#mine a")
    assert page.locator("textarea[name^=question_]").count() == 6  # all five pairs and a blank row
    submit_with(page, "Control+Enter")  # saving without a change keeps every pair
    assert values(db, "write") == [{"pairs": pairs}]

    rev = login(browser, server, "rev")
    rev.goto(f"{server.url}/p/write/review")
    submit_with(rev, "n")
    assert rev.locator("#pair-count").inner_text() == "5"
    assert rev.locator("textarea[name=answer_4]").input_value() == "Answer number 4."

    rev.goto(f"{server.url}/p/correct/review")
    submit_with(rev, "n")
    assert rev.locator("#verdict").inner_text() == "draft rejected"
    assert rev.locator("#reason").inner_text() == "the weight is wrong"
    assert rev.locator("#changed").inner_text() == "changed the draft before submitting"
    submit_with(rev, "a")  # the rejection stands; the next one is leased at once
    assert rev.locator("#verdict").inner_text() == "draft corrected"
    assert rev.locator("#changes del").all_inner_texts() == ["Blue."]
    assert rev.locator("#changes ins").all_inner_texts() == ["Dark blue."]


def test_my_annotations_pages_newest_first(browser, workbench, tmp_path):
    server, db = workbench
    with db.transaction() as conn:
        project = store.create_project(conn, "many", "label", labels=["billing", "tech"])
        store.add_member(conn, project, store.find_user(conn, "ann"))
        importing.import_file(conn, project, write_jsonl(tmp_path / "many.jsonl",
                                                         [{"id": f"t{i}", "text": f"Text {i}"} for i in range(51)]))
    for i in range(51):
        annotate_directly(db, "many", "ann", {"label": "tech" if i == 50 else "billing"})
    page = login(browser, server, "ann")
    page.goto(f"{server.url}/p/many/mine")
    rows = page.locator("#mine tbody tr").all_inner_texts()
    assert len(rows) == 50 and rows[0].split("\t")[1] == "tech"  # newest first
    with page.expect_navigation():
        page.click("#older")
    rows = page.locator("#mine tbody tr").all_inner_texts()
    assert len(rows) == 1 and rows[0].split("\t")[1] == "billing"
    assert page.locator("#older").count() == 0 and page.locator("#newer").count() == 1


def test_admins_create_projects_edit_guidelines_and_import_with_a_format_in_the_browser(browser, workbench, tmp_path):
    server, db = workbench
    page = login(browser, server, "boss")
    with page.expect_navigation():
        page.click("#new-project")
    page.fill("input[name=name]", "tickets")
    page.select_option("select[name=task_type]", "label")
    page.fill("input[name=labels]", "billing")
    page.fill("textarea[name=guidelines]", "# Tickets\nPick the **team** that answers it.")
    submit_with(page, "Control+Enter")
    # refused with the reason, and nothing typed is lost
    assert "needs at least two labels" in page.locator("#error").inner_text()
    assert page.locator("textarea[name=guidelines]").input_value() == "# Tickets\nPick the **team** that answers it."
    page.fill("input[name=labels]", "billing, tech")
    submit_with(page, "Control+Enter")
    assert page.url.endswith("/p/tickets?notice=created")
    assert page.locator(".guidelines strong").inner_text() == "team"

    with page.expect_navigation():
        page.click("#settings-link")
    page.fill("textarea[name=guidelines]", "Pick the team. Ask a lead when unsure.")
    page.fill("input[name=overlap]", "2")
    submit_with(page, "Control+Enter")
    assert "settings saved" in page.locator(".notice").inner_text()
    assert "Ask a lead when unsure." in page.locator(".guidelines").inner_text()
    with db.transaction() as conn:
        assert store.find_project(conn, "tickets").overlap == 2

    sharegpt = write_jsonl(tmp_path / "tickets.txt", [  # a name that says nothing: the format is chosen
        {"conversations": [{"from": "human", "value": "My invoice is wrong"}, {"from": "gpt", "value": "billing"}]}])
    page.set_input_files("input[name=file]", str(sharegpt))
    page.select_option("#import-format", "sharegpt")
    with page.expect_navigation():
        page.click("#import")
    assert "imported 1 record(s)" in page.locator(".notice").inner_text()
    annotator = login(browser, server, "ann")
    annotator.goto(f"{server.url}/projects/new")
    assert annotator.locator("#error").inner_text() == "this needs the admin role"


def test_the_task_page_shows_guidelines_progress_and_lease_keeps_text_on_409_and_undoes_a_skip(browser, workbench,
                                                                                                tmp_path):
    server, db = workbench
    with db.transaction() as conn:  # a long record: Submit must stay in view without scrolling
        project = store.create_project(conn, "long", "write", "Ask what a customer would ask.")
        for name in ("ann", "rev"):
            store.add_member(conn, project, store.find_user(conn, name))
        importing.import_file(conn, project, write_jsonl(tmp_path / "long.jsonl", [
            {"id": "l1", "text": "The L1 lamp. " + "It has many features. " * 600},
            {"id": "l2", "text": "The L2 lamp runs for 40 hours."}]))
    page = login(browser, server, "ann")
    open_task(page, server, "long")
    assert page.locator("#left").inner_text() == "2 of 2 left for you"
    assert "Ask what a customer would ask." in page.locator("#guidelines").inner_text()
    assert page.locator("#lease").inner_text() in ("Reserved for you for 29 more minute(s).",
                                                   "Reserved for you for 30 more minute(s).")
    in_view = "el => el.getBoundingClientRect().bottom <= window.innerHeight"
    assert page.locator("#submit").evaluate(in_view)
    assert "The L1 lamp." in page.locator("#record").inner_text()

    submit_with(page, "Escape", "s")  # skip L1: L2 opens, with an undo for the skip
    assert "The L2 lamp" in page.locator("#record").inner_text()
    assert page.locator("#left").inner_text() == "1 of 2 left for you"
    submit_with(page, "Escape", "u")
    assert "The L1 lamp." in page.locator("#record").inner_text()
    assert page.locator("#left").inner_text() == "2 of 2 left for you"

    # The lease runs out and someone else does the record: the submit gets a 409 that keeps what was typed.
    page.locator("textarea[name=question_0]").fill("How many features does the L1 have?")
    page.locator("textarea[name=answer_0]").fill("Many.")
    with db.transaction() as conn:
        conn.execute(schema.assignments.update().values(expires_at=1.0))
    annotate_directly(db, "long", "rev", {"pairs": [{"question": "What is the L1?", "answer": "A lamp."}]})
    submit_with(page, "Control+Enter")
    assert "expired and other annotators took its places" in page.locator("#error").inner_text()
    assert page.locator("textarea[name=question_0]").input_value() == "How many features does the L1 have?"
    assert page.locator("textarea[name=answer_0]").input_value() == "Many."
