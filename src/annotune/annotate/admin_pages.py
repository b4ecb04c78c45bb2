"""Admin pages: users (create, role, disable/enable, delete, revoke tokens) and a project's members.

Forms post with the session's CSRF token; the changes are the ones the admin API makes
(:mod:`annotune.annotate.admin_api`), so they drop this server's cached logins of the user at once.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from annotune.annotate import admin_api, schema, store
from annotune.annotate.auth import CurrentAuth
from annotune.annotate.pages import _see, render_page

router = APIRouter(prefix="/admin", include_in_schema=False)


async def _field(request: Request, name: str) -> str:
    return str((await request.form()).get(name, ""))


@router.get("/users")
def users_page(request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    with request.app.state.db.transaction(readonly=True) as conn:
        users = store.users_overview(conn)
    return render_page(request, "users.html", auth, users=users, roles=schema.ROLES)


@router.post("/users")
async def add_user(request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    name, role, password = (await _field(request, "name"), await _field(request, "role"),
                            await _field(request, "password"))

    def run() -> None:
        with request.app.state.db.transaction() as conn:
            store.add_user(conn, name, role, password)

    await run_in_threadpool(run)
    return _see("/admin/users?notice=user_added")


@router.post("/users/{name}/role")
async def change_role(name: str, request: Request, auth: CurrentAuth) -> Response:
    role = await _field(request, "role")
    await run_in_threadpool(admin_api.change_user, request, auth, name, role)
    return _see("/admin/users?notice=user_saved")


@router.post("/users/{name}/disable")
def disable(name: str, request: Request, auth: CurrentAuth) -> Response:
    admin_api.change_user(request, auth, name, disabled=True)
    return _see("/admin/users?notice=user_saved")


@router.post("/users/{name}/enable")
def enable(name: str, request: Request, auth: CurrentAuth) -> Response:
    admin_api.change_user(request, auth, name, disabled=False)
    return _see("/admin/users?notice=user_saved")


@router.post("/users/{name}/delete")
def delete(name: str, request: Request, auth: CurrentAuth) -> Response:
    admin_api.delete_user(request, auth, name)
    return _see("/admin/users?notice=user_deleted")


@router.post("/users/{name}/revoke-tokens")
def revoke_tokens(name: str, request: Request, auth: CurrentAuth) -> Response:
    count = admin_api.revoke_tokens(request, auth, name)
    return _see(f"/admin/users?notice=revoked&count={count}")


@router.get("/projects/{name}/members")
def members_page(name: str, request: Request, auth: CurrentAuth) -> Response:
    store.require_admin(auth.user)
    with request.app.state.db.transaction(readonly=True) as conn:
        project = store.find_project(conn, name)
        members = store.member_names(conn, project)
        others = [u.name for u in store.list_users(conn) if u.name not in members]
    return render_page(request, "members.html", auth, project=project, members=members, others=others)


@router.post("/projects/{name}/members")
async def add_member(name: str, request: Request, auth: CurrentAuth) -> Response:
    user = await _field(request, "user")
    await run_in_threadpool(admin_api.change_member, request, auth, name, user, True)
    return _see(f"/admin/projects/{quote(name)}/members?notice=members_saved")


@router.post("/projects/{name}/members/{user}/remove")
def remove_member(name: str, user: str, request: Request, auth: CurrentAuth) -> Response:
    admin_api.change_member(request, auth, name, user, add=False)
    return _see(f"/admin/projects/{quote(name)}/members?notice=members_saved")
