"""Server-rendered pages: log in, projects, annotate (every task type), review, import and export.

No front-end build step: Jinja templates with autoescaping (record text is always inert) and one small
script for keyboard shortcuts. Every form carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from annotune.annotate import diff, exporting, importing, logins, markdown, queue, review, stats, store
from annotune.annotate.api import export_response, import_upload, upload_name
from annotune.annotate.auth import SESSION_COOKIE, Auth, CurrentAuth, client_address, log_out, set_session_cookie
from annotune.annotate.errors import Conflict, Invalid, WorkbenchError
from annotune.annotate.queue import Task
from annotune.annotate.tasks import MAX_PAIRS
from annotune.dataset.formats import FORMATS

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# Notices after a redirect are named by a code with whole-number values, never text from the URL: a link
# someone else made cannot put their words on the page as an official notice.
NOTICES = {"saved": ("annotation {id} saved", ("id",)),
           "imported": ("imported {added} record(s) ({already} already there, {drafts} waiting for drafts)",
                        ("added", "already", "drafts")),
           "reviewed": ("nothing left for you to review right now", ()),
           "created": ("project created: import records below, then add members", ()),
           "settings": ("settings saved", ()),
           "user_added": ("user added", ()), "user_saved": ("user changed", ()),
           "user_deleted": ("user deleted", ()), "revoked": ("{count} API token(s) revoked", ("count",)),
           "members_saved": ("members changed", ())}


def notice_for(request: Request) -> str | None:
    known = NOTICES.get(request.query_params.get("notice", ""))
    if known is None:
        return None
    text, names = known
    values = {n: request.query_params.get(n, "") for n in names}
    if not all(v.isdigit() and len(v) < 19 for v in values.values()):
        return None
    return text.format(**values)


templates.env.globals["notice_for"] = notice_for
templates.env.filters["markdown"] = markdown.render
templates.env.filters["enumerate_list"] = lambda items: list(enumerate(items))
templates.env.globals["draft_changes"] = diff.draft_changes
LOGIN_CSRF_COOKIE = "annotune_login_csrf"
WRITE_ROWS = 3  # question/answer pairs offered on an empty write form
MINE_PAGE = 50  # annotations per page of "my annotations"


def write_rows(value: dict[str, Any]) -> int:
    """Rows of a write form: every pair the value holds (none is ever hidden) plus a blank one, at least 3."""
    return min(MAX_PAIRS, max(WRITE_ROWS, len(value.get("pairs") or []) + 1))


def render_page(request: Request, template: str, auth: Auth | None, status: int = 200,
                **context: Any) -> HTMLResponse:
    context.update(user=auth.user if auth else None, csrf_token=auth.csrf_token if auth else None)
    return templates.TemplateResponse(request, template, context, status_code=status)


def render_error(request: Request, message: str, status: int) -> HTMLResponse:
    return templates.TemplateResponse(request, "error.html", {"message": message, "status": status, "user": None,
                                                             "back": _back_link(request)}, status_code=status)


def _back_link(request: Request) -> str | None:
    """The page the user came from, when it is a page of this server (a real link: the CSP blocks javascript:)."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc or not referer.path.startswith("/"):
        return None
    if referer.path == request.url.path and request.method == "GET":
        return None  # going "back" to the page that failed would fail again
    return referer.path + (f"?{referer.query}" if referer.query else "")


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


# --------------------------------------------------------------------------------------------- log in


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    token = secrets.token_urlsafe(24)
    response = render_page(request, "login.html", None, login_csrf=token, next=_safe_next(next))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=request.app.state.settings.secure_cookies)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = str(form.get("csrf_token", ""))
    if not expected or not hmac.compare_digest(expected, sent):
        return render_error(request, "the login form expired; open the login page again", 403)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    try:
        _, token, _ = await logins.log_in(request.app.state.db, request.app.state.hash_gate, name, password,
                                          client_address(request))
    except WorkbenchError as exc:
        response = render_page(request, "login.html", None, exc.status, error=str(exc), login_csrf=expected,
                               next=_safe_next(str(form.get("next", "/"))), name=name)
        if getattr(exc, "retry_after", None) is not None:
            response.headers["retry-after"] = str(exc.retry_after)  # type: ignore[attr-defined]
        return response
    response = _see(_safe_next(str(form.get("next", "/"))))
    set_session_cookie(response, request, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, auth: CurrentAuth) -> Response:
    """Log out here, or with ``everywhere`` in the form, in every browser and device (API tokens stay)."""
    everywhere = bool((await request.form()).get("everywhere"))
    await run_in_threadpool(log_out, request, auth, everywhere)
    response = _see("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ------------------------------------------------------------------------------------------- projects


@router.get("/")
def home(request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction(readonly=True) as conn:
        projects = [(p, stats.progress(conn, p)["records"]) for p in store.projects_for(conn, auth.user)]
    return render_page(request, "projects.html", auth, projects=projects)


@router.get("/p/{name}")
def project_page(name: str, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user)
        progress = stats.progress(conn, project)
        agreement = stats.project_agreement(conn, project) if auth.user.can_review else None
        members = store.member_names(conn, project)
    mine = progress["per_user"].get(auth.user.name, {})
    return render_page(request, "project.html", auth, project=project, progress=progress, agreement=agreement,
                       members=members, mine=mine, formats=exporting.EXPORT_FORMATS, kinds=importing.KINDS,
                       data_formats=FORMATS)


# ------------------------------------------------------------------------------------------- annotate


def _task_page(request: Request, conn: Any, auth: Auth, project: store.Project, task: Task | None,
               status: int = 200, error: str | None = None, entered: FormData | None = None, waiting: bool = False,
               undo: int | None = None) -> Response:
    """The task form, filled with what the user typed (after an error) or with the model's suggestion, with
    the guidelines, what is left for the user (read in the caller's transaction ``conn``) and how long the
    task stays theirs."""
    value: dict[str, Any] = {}
    if task is not None and entered is not None:
        value = form_value(project.task_type, entered, task.payload)
    elif task is not None and project.task_type == "write" and task.payload.get("suggestion"):
        value = {"pairs": task.payload["suggestion"]["pairs"]}
    left = queue.left_for(conn, project, auth.user)
    minutes = max(0, int((task.expires_at - time.time()) // 60)) if task is not None else 0
    return render_page(request, "task.html", auth, status, project=project, task=task, error=error, value=value,
                       entered=entered is not None, rows=write_rows(value), waiting=waiting, left=left,
                       lease_minutes=minutes, undo=undo)


@router.get("/p/{name}/annotate")
def annotate(name: str, request: Request, auth: CurrentAuth, skipped: str = "") -> Response:
    """The user's current task; without one, a "Start" button (leasing is a POST: a link cannot do it).
    ``skipped``: the task just skipped, offered back with an undo button."""
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user)
        task = queue.current_task(conn, project, auth.user)
        waiting = task is None and queue.has_work(conn, project, auth.user)
        undo = int(skipped) if skipped.isdigit() and len(skipped) < 19 else None
        return _task_page(request, conn, auth, project, task, waiting=waiting, undo=undo)


def _lease_next(request: Request, conn: Any, project: store.Project, user: store.User) -> None:
    queue.next_task(conn, project, user, request.app.state.settings.lease_seconds)


@router.post("/p/{name}/annotate")
def lease(name: str, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction() as conn:
        _lease_next(request, conn, store.project_for(conn, name, auth.user), auth.user)
    return _see(f"/p/{quote(name)}/annotate")


def form_value(task_type: str, form: FormData, payload: dict[str, Any]) -> dict[str, Any]:
    """The annotation a task form describes (checked afterwards by :func:`tasks.check_value`)."""
    get = lambda key: str(form.get(key, ""))
    if task_type == "write":  # every row the form sent, however many: the check enforces the limit
        rows = sorted({int(key.split("_", 1)[1]) for key in form.keys()
                       if key.startswith(("question_", "answer_")) and key.split("_", 1)[1].isdigit()})
        return {"pairs": [{"question": get(f"question_{i}"), "answer": get(f"answer_{i}")} for i in rows]}
    if task_type == "correct":
        verdict = get("verdict") or "auto"
        if verdict == "auto":
            same = get("question").strip() == payload.get("question", "").strip() and \
                get("answer").strip() == payload.get("answer", "").strip()
            verdict = "ok" if same else "edited"
        return {"verdict": verdict, "question": get("question"), "answer": get("answer"), "reason": get("reason")}
    if task_type == "rate":
        return {"score": get("score"), "comment": get("comment")}
    if task_type == "compare":
        return {"choice": get("choice"), "comment": get("comment")}
    return {"label": form.get("label")}


@router.post("/p/{name}/tasks/{assignment_id}")
async def submit(name: str, assignment_id: int, request: Request, auth: CurrentAuth) -> Response:
    form = await request.form()

    def run() -> Response:
        with request.app.state.db.transaction() as conn:
            project = store.project_for(conn, name, auth.user)
            task = queue.leased_task(conn, project, auth.user, assignment_id)
            payload = task.payload if task else {}
            try:  # the value is checked before anything is written
                queue.submit(conn, project, auth.user, assignment_id, form_value(project.task_type, form, payload))
            except (Invalid, Conflict) as exc:
                if task is None:  # submitted or skipped already: nothing of this form to keep
                    raise
                # the form comes back with everything typed in it, so nothing is lost
                return _task_page(request, conn, auth, project, task, exc.status, error=str(exc), entered=form)
            _lease_next(request, conn, project, auth.user)  # after a submit the next task opens by itself
        return _see(f"/p/{quote(name)}/annotate")

    return await run_in_threadpool(run)


@router.post("/p/{name}/tasks/{assignment_id}/skip")
def skip(name: str, assignment_id: int, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction() as conn:
        project = store.project_for(conn, name, auth.user)
        queue.skip(conn, project, auth.user, assignment_id)
        _lease_next(request, conn, project, auth.user)
    return _see(f"/p/{quote(name)}/annotate?skipped={assignment_id}")


@router.post("/p/{name}/tasks/{assignment_id}/unskip")
def unskip(name: str, assignment_id: int, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction() as conn:
        project = store.project_for(conn, name, auth.user)
        queue.unskip(conn, project, auth.user, assignment_id, request.app.state.settings.lease_seconds)
    return _see(f"/p/{quote(name)}/annotate")


# ------------------------------------------------------------------------------------ own annotations


def _version(form: FormData) -> int | None:
    """The annotation version the edit form was opened at (None when missing, which the check reports)."""
    text = str(form.get("version", ""))
    return int(text) if text.isdigit() else None


async def _change_or_409(request: Request, run: Callable[[], Response]) -> Response:
    """Run a change to an annotation; a stale version gets a page that says who changed it."""
    try:
        return await run_in_threadpool(run)
    except Conflict as exc:
        return render_error(request, str(exc), 409)


@router.get("/p/{name}/mine")
def my_annotations(name: str, request: Request, auth: CurrentAuth, page: int = 1) -> Response:
    page = max(1, min(page, 10**9))
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user)
        items = review.list_annotations(conn, project, auth.user, limit=MINE_PAGE + 1,
                                        offset=(page - 1) * MINE_PAGE, mine=True)
    return render_page(request, "mine.html", auth, project=project, items=items[:MINE_PAGE], page=page,
                       more=len(items) > MINE_PAGE)


@router.get("/p/{name}/annotations/{annotation_id}/edit")
def edit_form(name: str, annotation_id: int, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user)
        item = review.get_annotation(conn, project, auth.user, annotation_id)
    return render_page(request, "edit.html", auth, project=project, item=item, rows=write_rows(item["value"]))


@router.post("/p/{name}/annotations/{annotation_id}/edit")
async def edit_submit(name: str, annotation_id: int, request: Request, auth: CurrentAuth) -> Response:
    form = await request.form()

    def run() -> Response:
        with request.app.state.db.transaction() as conn:
            project = store.project_for(conn, name, auth.user)
            item = review.get_annotation(conn, project, auth.user, annotation_id)
            review.edit(conn, project, auth.user, annotation_id, form_value(project.task_type, form, item["payload"]),
                        _version(form))
        return _see(f"/p/{quote(name)}/mine?notice=saved&id={annotation_id}")

    return await _change_or_409(request, run)


# --------------------------------------------------------------------------------------------- review


@router.get("/p/{name}/review")
def review_page(name: str, request: Request, auth: CurrentAuth) -> Response:
    """The annotation leased to this reviewer, if any; taking the next one is a POST (it writes a lease)."""
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user, review=True)
        item = review.current_review(conn, project, auth.user)
        waiting = review.queue_counts(conn, project, auth.user) if item is None else None
    return render_page(request, "review.html", auth, project=project, item=item, waiting=waiting,
                       rows=write_rows(item["value"] if item else {}))


@router.post("/p/{name}/review/next")
def review_next(name: str, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction() as conn:
        project = store.project_for(conn, name, auth.user, review=True)
        found = review.next_for_review(conn, project, auth.user)
    return _see(f"/p/{quote(name)}/review" + ("" if found else "?notice=reviewed"))


@router.post("/p/{name}/annotations/{annotation_id}/release")
def review_release(name: str, annotation_id: int, request: Request, auth: CurrentAuth) -> Response:
    with request.app.state.db.transaction() as conn:
        project = store.project_for(conn, name, auth.user, review=True)
        review.release_review(conn, project, auth.user, annotation_id)
    return _see(f"/p/{quote(name)}/review")


@router.post("/p/{name}/annotations/{annotation_id}/review")
async def review_submit(name: str, annotation_id: int, request: Request,
                        auth: CurrentAuth) -> Response:
    form = await request.form()
    decision = str(form.get("decision", ""))

    def run() -> Response:
        with request.app.state.db.transaction() as conn:
            project = store.project_for(conn, name, auth.user, review=True)
            item = review.get_annotation(conn, project, auth.user, annotation_id)
            value = form_value(project.task_type, form, item["payload"]) if decision == "edit" else None
            if value is not None and project.task_type == "correct" and value["verdict"] == "ok":
                value["verdict"] = "edited"
            review.review(conn, project, auth.user, annotation_id, decision, _version(form), value,
                          str(form.get("comment", "")))
            review.next_for_review(conn, project, auth.user)  # the next one is ready when the page loads
        return _see(f"/p/{quote(name)}/review")

    return await _change_or_409(request, run)


# ------------------------------------------------------------------------------------- import, export


@router.post("/p/{name}/import")
async def import_file_upload(name: str, request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise Invalid("file", "choose a file to import")
    fmt = str(form.get("format") or "") or None
    result = await run_in_threadpool(import_upload, request.app.state.db, name, await upload.read(),
                                     upload_name(upload.filename, fmt), str(form.get("kind") or "auto"), fmt)
    return _see(f"/p/{quote(name)}?notice=imported&added={result.added}&already={result.already_there}"
                f"&drafts={result.drafts}")


@router.get("/p/{name}/export")
def export_download(name: str, request: Request, auth: CurrentAuth, to: str = "openai",
                    include_pending: bool = False, min_score: float | None = None,
                    changed_only: bool = False) -> Response:
    return export_response(request, auth, name, to, include_pending, min_score, changed_only)
