"""The optional LLM judge, through the official `openai` client against an OpenAI-compatible endpoint on loopback
(a scripted grader: it calls an answer correct when it repeats the reference)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_cli
from serve_fixtures import ANSWERS
from test_evaluate import heldout


class _Grader(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        _Grader.seen.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        prompt = body["messages"][0]["content"]
        reference = re.search(r"Reference answer: (.*)\nAnswer to grade: ", prompt, re.S).group(1)
        answer = re.search(r"Answer to grade: (.*)\n\nIs the answer", prompt, re.S).group(1)
        verdict = "correct" if answer.strip() == reference.strip() else "wrong"
        reply = {"id": "j", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": f"VERDICT: {verdict}\nREASON: compared"}}],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def grader():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Grader.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_judge_grades_every_answer_and_gates(memorized, grader, tmp_path):
    data = heldout(tmp_path / "support.jsonl", ANSWERS["support"])
    result = run_cli("evaluate", str(memorized["support"]), "--data", str(data), "--out", str(tmp_path / "out"),
                     "--no-probe", "--max-new-tokens", "100", "--judge-url", grader, "--judge-model", "grader-1",
                     "--fail-under", "judge=0.9", env={"ANNOTUNE_JUDGE_API_KEY": "judge-key"})
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["models"]["support"]["judge"]["score"] == 1.0
    assert report["models"]["base"]["judge"]["score"] == 0.0
    assert report["judge"]["model"] == "grader-1"
    assert len(_Grader.seen) == 6 and {s["model"] for s in _Grader.seen} == {"grader-1"}
    assert {s["auth"] for s in _Grader.seen} == {"Bearer judge-key"}
    rows = [json.loads(line) for line in (tmp_path / "out" / "answers.jsonl").read_text().splitlines()]
    assert rows[0]["answers"]["support"]["judge"] == {"verdict": "correct", "reason": "compared"}


def test_judge_options_go_together(memorized, tmp_path):
    data = heldout(tmp_path / "d.jsonl", ANSWERS["support"])
    result = run_cli("evaluate", str(memorized["support"]), "--data", str(data), "--judge-url", "http://127.0.0.1:9")
    assert result.returncode == 2 and "--judge-url and --judge-model go together" in result.stderr
