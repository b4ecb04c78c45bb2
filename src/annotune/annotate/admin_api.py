"""Administration of users, API tokens and project members (``/api/users``, ``/api/projects/P/members``).

Admin only. The change functions here are shared with the admin pages (:mod:`annotune.annotate.admin_pages`);
each drops what this server's :class:`~annotune.annotate.auth.AuthCache` remembers of the user it changes,
so a disabled or deleted user, a new role or a revoked token takes effect at once here (other processes:
within the cache's few seconds).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from annotune.annotate import store
from annotune.annotate.auth import Auth, CurrentAuth
from annotune.annotate.errors import Forbidden

router = APIRouter(prefix="/api")


class UserBody(BaseModel):
    name: str
    role: str
    password: str


class UserPatch(BaseModel):
    role: str | None = None
    disabled: bool | None = None


class TokenBody(BaseModel):
    label: str = ""
    days: float | None = store.TOKEN_DAYS


class MemberBody(BaseModel):
    user: str


def _not_yourself(auth: Auth, name: str, what: str) -> None:
    if name == auth.user.name:
        raise Forbidden(f"you cannot {what} your own account; ask another admin (or use the CLI)")


def change_user(request: Request, auth: Auth, name: str, role: str | None = None,
                disabled: bool | None = None) -> store.User:
    """Set ``name``'s role and/or disabled state."""
    store.require_admin(auth.user)
    with request.app.state.db.transaction() as conn:
        user = store.find_user(conn, name)
        if role is not None and role != user.role:
            _not_yourself(auth, name, "change the role of")
            store.set_role(conn, user, role)
        if disabled is not None and disabled != user.disabled:
            _not_yourself(auth, name, "disable")
            store.set_disabled(conn, user, disabled)
        changed = store.find_user(conn, name)
    request.app.state.auth_cache.drop_user(user.id)
    return changed


def delete_user(request: Request, auth: Auth, name: str) -> None:
    store.require_admin(auth.user)
    _not_yourself(auth, name, "delete")
    with request.app.state.db.transaction() as conn:
        user = store.find_user(conn, name)
        store.delete_user(conn, user)
    request.app.state.auth_cache.drop_user(user.id)


def revoke_tokens(request: Request, auth: Auth, name: str, token_id: int | None = None) -> int:
    store.require_admin(auth.user)
    with request.app.state.db.transaction() as conn:
        user = store.find_user(conn, name)
        count = store.revoke_tokens(conn, user, token_id)
    request.app.state.auth_cache.drop_user(user.id)
    return count


def change_member(request: Request, auth: Auth, project_name: str, user_name: str, add: bool) -> bool:
    """Add or remove a member; False when nothing changed (already in, or not a member)."""
    store.require_admin(auth.user)
    with request.app.state.db.transaction() as conn:
        project, user = store.find_project(conn, project_name), store.find_user(conn, user_name)
        return store.add_member(conn, project, user) if add else store.remove_member(conn, project, user)


def _user_json(user: store.User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "disabled": user.disabled}


@router.get("/users")
def users(request: Request, auth: CurrentAuth) -> list[dict[str, Any]]:
    """Every user: ``name``, ``role``, ``disabled``, ``tokens`` (live API tokens)."""
    store.require_admin(auth.user)
    with request.app.state.db.transaction(readonly=True) as conn:
        return store.users_overview(conn)


@router.post("/users", status_code=201)
def create_user(body: UserBody, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    store.require_admin(auth.user)
    with request.app.state.db.transaction() as conn:
        return _user_json(store.add_user(conn, body.name, body.role, body.password))


@router.patch("/users/{name}")
def patch_user(name: str, body: UserPatch, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """``{"role"?, "disabled"?}``; disabling ends the user's sessions and stops their tokens at once."""
    return _user_json(change_user(request, auth, name, body.role, body.disabled))


@router.delete("/users/{name}")
def remove_user(name: str, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """Refused (409) while annotations the user wrote or reviewed exist: disable them instead."""
    delete_user(request, auth, name)
    return {"deleted": name}


@router.get("/users/{name}/tokens")
def tokens(name: str, request: Request, auth: CurrentAuth) -> list[dict[str, Any]]:
    store.require_admin(auth.user)
    with request.app.state.db.transaction(readonly=True) as conn:
        return store.list_tokens(conn, store.find_user(conn, name))


@router.post("/users/{name}/tokens", status_code=201)
def create_token(name: str, body: TokenBody, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """A new token for ``name`` (shown once), valid ``days`` (default 90; ``null``: until revoked)."""
    store.require_admin(auth.user)
    with request.app.state.db.transaction() as conn:
        return {"token": store.create_token(conn, store.find_user(conn, name), body.label, body.days)}


@router.delete("/users/{name}/tokens")
def revoke(name: str, request: Request, auth: CurrentAuth, id: int | None = None) -> dict[str, Any]:
    """Revoke token ``id`` of ``name``, or all of their tokens without ``id``."""
    return {"revoked": revoke_tokens(request, auth, name, id)}


@router.post("/projects/{name}/members")
def add_member(name: str, body: MemberBody, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    added = change_member(request, auth, name, body.user, add=True)
    return {"added": added, "members": _members(request, name)}


@router.delete("/projects/{name}/members/{user}")
def remove_member(name: str, user: str, request: Request, auth: CurrentAuth) -> dict[str, Any]:
    """Take ``user`` out of the project (their annotations stay; an open lease simply expires)."""
    removed = change_member(request, auth, name, user, add=False)
    return {"removed": removed, "members": _members(request, name)}


def _members(request: Request, project: str) -> list[str]:
    with request.app.state.db.transaction(readonly=True) as conn:
        return store.member_names(conn, store.find_project(conn, project))
