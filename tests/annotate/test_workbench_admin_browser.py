"""Admin pages in a real browser: users (add, role, disable/enable, revoke tokens, delete) and project members."""

from __future__ import annotations

import sqlalchemy as sa
from test_workbench_browser import PASSWORD, login, open_task, submit_with
from test_workbench_browser import workbench as _workbench

from annotune.annotate import schema, store

workbench = _workbench  # the fixture: five projects, ann, rev, outsider and the admin boss


def row(page, name):
    return page.locator(f'#users tr[data-user="{name}"]')


def test_an_admin_manages_users_and_tokens_and_a_disabled_user_is_out_at_once(browser, workbench):
    server, db = workbench
    with db.transaction() as conn:
        store.create_token(conn, store.find_user(conn, "ann"), "script")
    outsider = login(browser, server, "outsider")  # logged in before being disabled
    admin = login(browser, server, "boss")
    with admin.expect_navigation():
        admin.click("#users-link")
    assert row(admin, "ann").locator(".tokens").inner_text() == "1"
    admin.fill("#add-user input[name=name]", "newbie")
    admin.select_option("#add-user select[name=role]", "annotator")
    admin.fill("#add-user input[name=password]", "newbie-pass-1")
    submit_with(admin, "Enter")
    assert "user added" in admin.locator(".notice").inner_text()
    row(admin, "newbie").locator("select[name=role]").select_option("reviewer")
    with admin.expect_navigation():
        row(admin, "newbie").locator("[data-action=role]").click()
    with db.transaction() as conn:
        assert store.find_user(conn, "newbie").role == "reviewer"
    with admin.expect_navigation():
        row(admin, "ann").locator("[data-action=revoke]").click()
    assert "1 API token(s) revoked" in admin.locator(".notice").inner_text()
    assert row(admin, "ann").locator(".tokens").inner_text() == "0"
    with admin.expect_navigation():
        row(admin, "outsider").locator("[data-action=disable]").click()
    assert row(admin, "outsider").locator(".state").inner_text() == "disabled"
    outsider.goto(f"{server.url}/")
    assert "/login" in outsider.url  # the session stopped working at once
    outsider.fill("input[name=name]", "outsider")
    outsider.fill("input[name=password]", PASSWORD)
    submit_with(outsider, "Enter")
    assert "disabled" in outsider.locator("#error").inner_text()
    with admin.expect_navigation():
        row(admin, "outsider").locator("[data-action=enable]").click()
    assert row(admin, "outsider").locator(".state").inner_text() == "active"
    with admin.expect_navigation():
        row(admin, "newbie").locator("[data-action=delete]").click()
    assert row(admin, "newbie").count() == 0
    # Forged forms (no CSRF token) change nothing; non-admins get no users page.
    forged = admin.request.post(f"{server.url}/admin/users/ann/disable", form={})
    assert forged.status == 403
    ann = login(browser, server, "ann")
    assert ann.locator("#users-link").count() == 0
    assert ann.request.get(f"{server.url}/admin/users").status == 403


def test_deleting_a_user_with_annotations_says_to_disable_them(browser, workbench):
    server, _ = workbench
    ann = login(browser, server, "ann")
    open_task(ann, server, "rate")
    submit_with(ann, "Escape", "4", "Enter")
    admin = login(browser, server, "boss")
    admin.goto(f"{server.url}/admin/users")
    with admin.expect_navigation():
        row(admin, "ann").locator("[data-action=delete]").click()
    assert "disable the account instead" in admin.locator("#error").inner_text()


def test_an_admin_adds_and_removes_members(browser, workbench):
    server, db = workbench
    outsider = login(browser, server, "outsider")
    admin = login(browser, server, "boss")
    admin.goto(f"{server.url}/p/label")
    with admin.expect_navigation():
        admin.click("#members-link")
    admin.select_option("#add-member select[name=user]", "outsider")
    with admin.expect_navigation():
        admin.click("#add-member button")
    assert "members changed" in admin.locator(".notice").inner_text()
    outsider.goto(f"{server.url}/p/label")
    assert outsider.locator("#error").count() == 0
    with admin.expect_navigation():
        admin.locator('#members tr[data-member="outsider"] [data-action=remove]').click()
    assert admin.locator('#members tr[data-member="outsider"]').count() == 0
    outsider.goto(f"{server.url}/p/label")
    assert outsider.locator("#error").inner_text().startswith("no project 'label'")
    with db.transaction() as conn:
        members = conn.execute(sa.select(sa.func.count()).select_from(schema.members)).scalar_one()
    assert members == 10  # ann and rev in each of the five projects


def test_log_out_everywhere_ends_the_other_browsers_sessions(browser, workbench):
    server, _ = workbench
    laptop, phone = login(browser, server, "ann"), login(browser, server, "ann")
    with phone.expect_navigation():
        phone.click("#logout-everywhere")
    laptop.goto(f"{server.url}/")
    assert "/login" in laptop.url
