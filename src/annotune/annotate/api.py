"""The JSON API (``/api/...``). Every route is one transaction; errors come back as ``{"error", "field"?}``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from annotune.annotate import exporting, importing, logins, queue, review, stats, store
from annotune.annotate.auth import SESSION_COOKIE, Auth, CurrentAuth, client_address, log_out, set_session_cookie
from annotune.annotate.db import Database
from annotune.annotate.errors import MethodNotAllowed

router = APIRouter(prefix="/api")


class LoginBody(BaseModel):
    name: str
    password: str


class ProjectBody(BaseModel):
    name: str
    task_type: str
    guidelines: str = ""
    labels: list[str] = Field(default_factory=list)
    overlap: int = 1
    self_review: bool = False


class ProjectPatch(BaseModel):
    guidelines: str | None = None
    overlap: int | None = None
    self_review: bool | None = None


class ValueBody(BaseModel):
    value: Any


class EditBody(BaseModel):
    value: Any
    version: Any = None


class ReviewBody(BaseModel):
    decision: str
    version: Any = None
    value: Any = None
    comment: str = ""


def _db(request: Request) -> Database:
    return request.app.state.db


def project_json(project: store.Project) -> dict[str, Any]:
    return {"name": project.name, "task_type": project.task_type, "guidelines": project.guidelines,
            "labels": project.labels, "overlap": project.overlap, "self_review": project.self_review}


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    with _db(request).transaction(readonly=True) as conn:
        conn.exec_driver_sql("SELECT 1")
    return {"ok": True}


@router.post("/login")
async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    user, token, csrf = await logins.log_in(_db(request), request.app.state.hash_gate, body.name, body.password,
                                            client_address(request))
    set_session_cookie(response, request, token)
    return {"name": user.name, "role": user.role, "csrf_token": csrf}


@router.post("/logout")
def logout(request: Request, response: Response, auth: CurrentAuth, everywhere: bool = False) -> dict[str, Any]:
    """End this session; ``everywhere=true`` ends every session of the user (API tokens stay)."""
    ended = log_out(request, auth, everywhere)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True, "sessions_ended": ended}


@router.get("/me")
def me(auth: CurrentAuth) -> dict[str, Any]:
    return {"name": auth.user.name, "role": auth.user.role, "csrf_token": auth.csrf_token}


@router.get("/projects")
def list_projects(request: Request, auth: CurrentAuth) -> list[dict[str, Any]]:
    with _db(request).transaction(readonly=True) as conn:
        return [project_json(p) for p in store.projects_for(conn, auth.user)]


@router.post("/projects", status_code=201)
def create_project(body: ProjectBody, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    store.require_admin(auth.user)
    with _db(request).transaction() as conn:
        return project_json(store.create_project(conn, body.name, body.task_type, body.guidelines, body.labels,
                                                 body.overlap, body.self_review))


@router.get("/projects/{name}")
def get_project(name: str, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user)
        return {**project_json(project), "members": store.member_names(conn, project)}


@router.patch("/projects/{name}")
def patch_project(name: str, body: ProjectPatch, request: Request,
                  auth: CurrentAuth) -> dict[str, Any]:
    store.require_admin(auth.user)
    with _db(request).transaction() as conn:
        project = store.find_project(conn, name)
        return project_json(store.update_project(conn, project, body.guidelines, body.overlap,
                                                            body.self_review))


def upload_name(filename: str | None, fmt: str | None) -> str:
    """The uploaded file's own name (its last part), for messages and sources; a plain default without one."""
    name = Path((filename or "").replace("\\", "/")).name.strip()
    if not name or name.startswith("."):
        name = "upload.csv" if fmt == "csv" else "upload.jsonl"
    return name[:200]


def import_upload(db: Database, name: str, data: bytes, filename: str, kind: str,
                  fmt: str | None) -> importing.ImportResult:
    """Import an uploaded file's bytes into project ``name`` (written to a temporary file for the readers);
    problems and sources name the file as uploaded."""
    with tempfile.TemporaryDirectory(prefix="annotune-import-") as folder:
        path = Path(folder) / filename
        path.write_bytes(data)
        with db.transaction() as conn:
            return importing.import_file(conn, store.find_project(conn, name), path, kind, fmt, shown_as=filename)


@router.post("/projects/{name}/import")
async def import_records(name: str, request: Request, auth: CurrentAuth, kind: str = "auto",
                         format: str | None = None, filename: str | None = None) -> dict[str, Any]:
    """The request body is the file (JSONL, or any dataset format with ``format``); ``filename`` is its name."""
    store.require_admin(auth.user)
    body = await request.body()  # bounded by the upload limit
    result = await run_in_threadpool(import_upload, _db(request), name, body, upload_name(filename, format), kind,
                                     format)
    return {"added": result.added, "already_there": result.already_there, "drafts": result.drafts}


@router.get("/projects/{name}/next", include_in_schema=False)
def next_task_by_get(name: str) -> None:
    raise MethodNotAllowed(f"leasing a task changes state: use POST /api/projects/{name}/next")


@router.post("/projects/{name}/next")
def next_task(name: str, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """The caller's current task, else a newly leased one, else ``{"task": null}``."""
    with _db(request).transaction() as conn:
        project = store.project_for(conn, name, auth.user)
        task = queue.next_task(conn, project, auth.user, request.app.state.settings.lease_seconds)
        return {"task": task.to_json() if task else None}


@router.post("/projects/{name}/tasks/{assignment_id}/submit")
def submit(name: str, assignment_id: int, body: ValueBody, request: Request,
           auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction() as conn:
        project = store.project_for(conn, name, auth.user)
        return queue.submit(conn, project, auth.user, assignment_id, body.value)


@router.post("/projects/{name}/tasks/{assignment_id}/skip")
def skip(name: str, assignment_id: int, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction() as conn:
        queue.skip(conn, store.project_for(conn, name, auth.user), auth.user, assignment_id)
    return {"skipped": assignment_id}


@router.get("/projects/{name}/annotations")
def annotations(name: str, request: Request, auth: CurrentAuth, status: str | None = None, limit: int = 100,
                offset: int = 0) -> list[dict[str, Any]]:
    with _db(request).transaction(readonly=True) as conn:
        project = store.project_for(conn, name, auth.user)
        return review.list_annotations(conn, project, auth.user, status, limit, offset)


@router.get("/projects/{name}/annotations/{annotation_id}")
def annotation(name: str, annotation_id: int, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction(readonly=True) as conn:
        return review.get_annotation(conn, store.project_for(conn, name, auth.user), auth.user, annotation_id)


@router.put("/projects/{name}/annotations/{annotation_id}")
def edit_annotation(name: str, annotation_id: int, body: EditBody, request: Request,
                    auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction() as conn:
        project = store.project_for(conn, name, auth.user)
        return review.edit(conn, project, auth.user, annotation_id, body.value, body.version)


@router.post("/projects/{name}/annotations/{annotation_id}/review")
def review_annotation(name: str, annotation_id: int, body: ReviewBody, request: Request,
                      auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction() as conn:
        project = store.project_for(conn, name, auth.user, review=True)
        return review.review(conn, project, auth.user, annotation_id, body.decision, body.version, body.value,
                             body.comment)


@router.post("/projects/{name}/review/next")
def next_review(name: str, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """Lease the next annotation to review (the one already leased to the caller comes first)."""
    with _db(request).transaction() as conn:
        project = store.project_for(conn, name, auth.user, review=True)
        return {"annotation": review.next_for_review(conn, project, auth.user)}


@router.post("/projects/{name}/annotations/{annotation_id}/release")
def release_review(name: str, annotation_id: int, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """Give back a review lease so another reviewer can take the annotation now."""
    with _db(request).transaction() as conn:
        project = store.project_for(conn, name, auth.user, review=True)
        review.release_review(conn, project, auth.user, annotation_id)
    return {"ok": True}


@router.get("/projects/{name}/stats")
def project_stats(name: str, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    with _db(request).transaction(readonly=True) as conn:
        return stats.project_stats(conn, store.project_for(conn, name, auth.user, review=True))


def export_response(request: Request, auth: Auth, name: str, to: str, include_pending: bool,
                    min_score: float | None, changed_only: bool = False) -> Response:
    handle, path = tempfile.mkstemp(suffix=".jsonl", prefix="annotune-export-")
    os.close(handle)
    try:
        with _db(request).transaction(readonly=True) as conn:
            project = store.project_for(conn, name, auth.user, review=True)
            count = exporting.export_project(conn, project, to, path, include_pending, min_score,
                                             changed_only)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(path, media_type="application/x-ndjson", filename=f"{name}-{to}.jsonl",
                        headers={"x-annotune-examples": str(count)}, background=BackgroundTask(os.unlink, path))


@router.get("/projects/{name}/export")
def export(name: str, request: Request, auth: CurrentAuth, to: str = "openai", include_pending: bool = False,
           min_score: float | None = None, changed_only: bool = False) -> Response:
    return export_response(request, auth, name, to, include_pending, min_score, changed_only)

