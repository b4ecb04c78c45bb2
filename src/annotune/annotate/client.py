"""A small Python client for the workbench API.

    from annotune.annotate.client import Client
    wb = Client("http://127.0.0.1:8000", token="at_...")        # or ANNOTUNE_TOKEN in the environment
    task = wb.next_task("support")
    wb.submit("support", task["assignment_id"], {"pairs": [{"question": "...", "answer": "..."}]})
    wb.export("support", "openai", "train.jsonl")

Errors come back as the same exceptions the server raised (:class:`Conflict` for a stale version, ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from annotune.annotate import errors

TOKEN_ENV = "ANNOTUNE_TOKEN"
_BY_STATUS = {401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
              405: errors.MethodNotAllowed, 409: errors.Conflict, 413: errors.TooLarge}
_RETRY = {429: errors.Throttled, 503: errors.Busy}


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    @classmethod
    def login(cls, url: str, name: str, password: str) -> Client:
        """A client on a login session (as the browser has) instead of an API token."""
        client = cls(url, token="")
        client.http.headers.pop("authorization", None)
        body = client._call("POST", "/api/login", json={"name": name, "password": password})
        client.http.headers["x-csrf-token"] = body["csrf_token"]
        return client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.WorkbenchError(f"cannot reach the workbench at {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text[:200]}
            message = body.get("error")
            if not message:  # not an answer of the workbench's API: a wrong address or a proxy in the way
                detail = body.get("detail", body) if isinstance(body, dict) else body
                message = (f"{method} {response.url}: HTTP {response.status_code} {detail}; check that "
                           f"{self.http.base_url} is the address of an annotune workbench")
            if response.status_code == 422 and body.get("field"):
                raise errors.Invalid(body["field"], message.split(": ", 1)[-1])
            if response.status_code in _RETRY:
                raise _RETRY[response.status_code](message, int(response.headers.get("retry-after", "1")))
            raise _BY_STATUS.get(response.status_code, errors.WorkbenchError)(message)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(method, path, **kwargs).json()

    def me(self) -> dict[str, Any]:
        return self._json("GET", "/api/me")

    def logout(self, everywhere: bool = False) -> dict[str, Any]:
        """End this login session, or (``everywhere``) every session of the user."""
        return self._json("POST", "/api/logout", params={"everywhere": everywhere})

    def projects(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/projects")

    def create_project(self, name: str, task_type: str, guidelines: str = "", labels: list[str] | None = None,
                       overlap: int = 1) -> dict[str, Any]:
        return self._json("POST", "/api/projects", json={"name": name, "task_type": task_type, "guidelines":
                                                          guidelines, "labels": labels or [], "overlap": overlap})

    def add_member(self, project: str, user: str) -> dict[str, Any]:
        return self._json("POST", f"/api/projects/{project}/members", json={"user": user})

    def remove_member(self, project: str, user: str) -> dict[str, Any]:
        return self._json("DELETE", f"/api/projects/{project}/members/{user}")

    # Admin: users and their API tokens.

    def users(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/users")

    def add_user(self, name: str, role: str, password: str) -> dict[str, Any]:
        return self._json("POST", "/api/users", json={"name": name, "role": role, "password": password})

    def change_user(self, name: str, role: str | None = None, disabled: bool | None = None) -> dict[str, Any]:
        return self._json("PATCH", f"/api/users/{name}", json={"role": role, "disabled": disabled})

    def delete_user(self, name: str) -> dict[str, Any]:
        return self._json("DELETE", f"/api/users/{name}")

    def tokens(self, name: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/users/{name}/tokens")

    def create_token(self, name: str, label: str = "", days: float | None = 90) -> str:
        return self._json("POST", f"/api/users/{name}/tokens", json={"label": label, "days": days})["token"]

    def revoke_tokens(self, name: str, token_id: int | None = None) -> int:
        """Revoke one token of ``name`` (its id from :meth:`tokens`), or all of them."""
        params = {"id": token_id} if token_id is not None else {}
        return self._json("DELETE", f"/api/users/{name}/tokens", params=params)["revoked"]

    def import_file(self, project: str, path: str | Path, kind: str = "auto", fmt: str | None = None) -> dict:
        params = {"kind": kind, "filename": Path(path).name, **({"format": fmt} if fmt else {})}
        return self._json("POST", f"/api/projects/{project}/import", params=params, content=Path(path).read_bytes())

    def next_task(self, project: str) -> dict[str, Any] | None:
        """The current task, else a newly leased one (leasing is a POST), else None."""
        return self._json("POST", f"/api/projects/{project}/next")["task"]

    def submit(self, project: str, assignment_id: int, value: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/api/projects/{project}/tasks/{assignment_id}/submit", json={"value": value})

    def skip(self, project: str, assignment_id: int) -> dict[str, Any]:
        return self._json("POST", f"/api/projects/{project}/tasks/{assignment_id}/skip")

    def annotations(self, project: str, status: str | None = None, limit: int = 100, offset: int = 0) -> list:
        params: dict[str, Any] = {"limit": limit, "offset": offset, **({"status": status} if status else {})}
        return self._json("GET", f"/api/projects/{project}/annotations", params=params)

    def edit(self, project: str, annotation_id: int, value: dict[str, Any], version: int) -> dict[str, Any]:
        return self._json("PUT", f"/api/projects/{project}/annotations/{annotation_id}",
                          json={"value": value, "version": version})

    def review(self, project: str, annotation_id: int, decision: str, version: int, value: Any = None,
               comment: str = "") -> dict[str, Any]:
        return self._json("POST", f"/api/projects/{project}/annotations/{annotation_id}/review",
                          json={"decision": decision, "version": version, "value": value, "comment": comment})

    def next_review(self, project: str) -> dict[str, Any] | None:
        """Lease the next annotation to review; None when nothing is left for this reviewer."""
        return self._json("POST", f"/api/projects/{project}/review/next")["annotation"]

    def release_review(self, project: str, annotation_id: int) -> dict[str, Any]:
        return self._json("POST", f"/api/projects/{project}/annotations/{annotation_id}/release")

    def stats(self, project: str) -> dict[str, Any]:
        return self._json("GET", f"/api/projects/{project}/stats")

    def export(self, project: str, to: str, out: str | Path, include_pending: bool = False,
               min_score: float | None = None, changed_only: bool = False) -> int:
        """Download the project's training data to ``out``; returns the number of examples."""
        response = self._call("GET", f"/api/projects/{project}/export",
                              params={"to": to, "include_pending": include_pending, "changed_only": changed_only,
                                      **({"min_score": min_score} if min_score is not None else {})})
        from annotune.dataset.files import write_atomically

        write_atomically(Path(out), [response.text])
        return int(response.headers.get("x-annotune-examples", "0"))

    def close(self) -> None:
        self.http.close()
