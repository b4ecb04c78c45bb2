"""The server application in-process: an internal error keeps the OpenAI error shape and the security headers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from annotune.generation.loading import load_engine
from annotune.serve.app import create_app


def test_an_internal_error_is_answered_in_shape_with_the_security_headers(tiny, monkeypatch):
    engine = load_engine(str(tiny))
    app = create_app([engine])

    def broken(name):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(app.state.registry, "find", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/chat/completions", json={"model": "chatml", "messages": [
            {"role": "user", "content": "hi"}]})
        assert response.status_code == 500
        assert response.json()["error"] == {"message": "internal error: RuntimeError", "type": "server_error",
                                            "param": None, "code": None}
        assert "default-src 'self'" in response.headers["content-security-policy"]
        ok = client.get("/health")
        assert ok.status_code == 200 and ok.headers["x-content-type-options"] == "nosniff"
