"""Project administration in the browser: create a project, edit its guidelines and settings (admins only).

A form that fails its checks comes back with the error and everything that was typed, so nothing is lost.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from annotune.annotate import store
from annotune.annotate.auth import CurrentAuth
from annotune.annotate.errors import Conflict, Invalid
from annotune.annotate.pages import render_page
from annotune.annotate.tasks import TASK_TYPES

router = APIRouter(include_in_schema=False)


def _number(form: Any, key: str, default: int) -> int:
    text = str(form.get(key) or default).strip()
    if not text.isdigit() or len(text) > 6:
        raise Invalid(key, f"must be a whole number, got {text!r}")
    return int(text)


@router.get("/projects/new")
def new_project_form(request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    return render_page(request, "project_form.html", auth, project=None, entered={}, task_types=TASK_TYPES)


@router.post("/projects/new")
async def create_project(request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    form = await request.form()
    entered = {key: str(form.get(key) or "") for key in ("name", "task_type", "guidelines", "labels", "overlap")}
    entered["self_review"] = form.get("self_review") == "on"

    def run() -> Response:
        try:
            with request.app.state.db.transaction() as conn:
                project = store.create_project(
                    conn, entered["name"].strip(), entered["task_type"], entered["guidelines"],
                    [label for label in entered["labels"].split(",") if label.strip()],
                    _number(form, "overlap", 1), entered["self_review"])
        except (Invalid, Conflict) as exc:
            return render_page(request, "project_form.html", auth, exc.status, project=None, entered=entered,
                        task_types=TASK_TYPES, error=str(exc))
        return RedirectResponse(f"/p/{quote(project.name)}?notice=created", status_code=303)

    return await run_in_threadpool(run)


@router.get("/p/{name}/settings")
def settings_form(name: str, request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.find_project(conn, name)
    entered = {"guidelines": project.guidelines, "overlap": str(project.overlap), "self_review": project.self_review}
    return render_page(request, "project_form.html", auth, project=project, entered=entered, task_types=TASK_TYPES)


@router.post("/p/{name}/settings")
async def save_settings(name: str, request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    form = await request.form()
    entered = {"guidelines": str(form.get("guidelines") or ""), "overlap": str(form.get("overlap") or ""),
               "self_review": form.get("self_review") == "on"}

    def run() -> Response:
        with request.app.state.db.transaction() as conn:
            project = store.find_project(conn, name)
            try:
                store.update_project(conn, project, entered["guidelines"], _number(form, "overlap", project.overlap),
                                     entered["self_review"])
            except Invalid as exc:
                return render_page(request, "project_form.html", auth, exc.status, project=project, entered=entered,
                            task_types=TASK_TYPES, error=str(exc))
        return RedirectResponse(f"/p/{quote(name)}?notice=settings", status_code=303)

    return await run_in_threadpool(run)
