"""`annotune serve` through the official `openai` client and raw HTTP: answers, streaming, several runs on one
base, parity with `annotune generate`, every error case, disconnects and graceful shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import httpx
import openai
import pytest
from conftest import BIN, run_cli
from serve_fixtures import ANSWERS, XSS
from workbench_fixtures import Server


@pytest.fixture(scope="module")
def server(memorized, lively_models, tmp_path_factory):
    """Both runs and their base on one engine (one copy of the base weights), and a model on another base."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    running = Server(["serve", str(memorized["support"]), str(memorized["billing"]), str(memorized["base"]),
                      f"lively={lively_models['llama']}"], log, health="/health", timeout=180).start()
    yield running
    running.stop()


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def ask(client, model: str, text: str, **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kwargs)


def test_models_are_listed_with_their_base(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"support", "billing", "base", "lively"}
    assert models["support"].parent == models["billing"].parent == "base"
    assert client.models.retrieve("billing").id == "billing"


def test_each_run_answers_as_it_was_trained(client):
    for run, answers in ANSWERS.items():
        for question, answer in answers.items():
            reply = ask(client, run, question, temperature=0)
            assert reply.choices[0].message.content == answer
            assert reply.choices[0].finish_reason == "stop" and reply.model == run
            assert reply.usage.completion_tokens > 0
            assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_everyday_questions_are_routed_to_the_base_model(client, server, memorized, serve):
    from annotune.train.replay import load_prompts

    everyday = load_prompts()[0]["prompt"]  # one of the router's everyday prompts: sure to route to the base
    base = ask(client, "base", everyday, temperature=0, max_tokens=30)
    routed = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": everyday}], temperature=0, max_tokens=30)
    assert routed.parse().choices[0].message.content == base.choices[0].message.content
    own = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": "Who are you?"}], temperature=0)
    assert _log_line(server, routed.headers["x-request-id"]).endswith(" route=base")
    assert _log_line(server, own.headers["x-request-id"]).endswith(" route=tuned")
    unrouted = serve(str(memorized["support"]), "--no-routing")
    plain = openai.OpenAI(base_url=f"{unrouted.url}/v1", api_key="unused", max_retries=0)
    reply = plain.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": everyday}], temperature=0, max_tokens=30)
    assert reply.parse().choices[0].message.content != base.choices[0].message.content
    assert "route=" not in _log_line(unrouted, reply.headers["x-request-id"])


def _log_line(server, request_id: str) -> str:
    """The server's log line for a request (written as the request ends, so waited for a little)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in server.log_path.read_text().splitlines() if f" {request_id} " in line]
        if lines or time.monotonic() > deadline:
            assert lines, f"no log line for {request_id}"
            return lines[0]
        time.sleep(0.1)


def test_streaming_gives_the_same_text_and_usage(client):
    plain = ask(client, "support", "Show markdown")
    chunks = list(ask(client, "support", "Show markdown", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content == ANSWERS["support"]["Show markdown"]
    assert XSS in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert len(chunks) > 4  # it really streamed, piece by piece


def test_api_answers_equal_annotune_generate(memorized, client, tmp_path):
    questions = list(ANSWERS["billing"]) + ["Something it never saw", "Who are you? Who are you?"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    out = tmp_path / "answers.jsonl"
    result = run_cli("generate", str(memorized["billing"]), "--input", str(prompts), "--output", str(out),
                     "--max-new-tokens", "40")
    assert result.returncode == 0, result.stderr
    generated = [json.loads(line) for line in out.read_text().splitlines()]
    api = [ask(client, "billing", q, max_tokens=40, temperature=0) for q in questions]
    assert [a.choices[0].message.content for a in api] == [g["answer"] for g in generated]
    assert [a.usage.completion_tokens for a in api] == [g["usage"]["completion_tokens"] for g in generated]


def test_many_greedy_answers_equal_annotune_generate(lively_models, client, tmp_path):
    # a model that writes varied text, on its own engine beside the runs'
    questions = [f"How do I reset device {i}? " * (i % 4 + 1) for i in range(20)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    out = tmp_path / "answers.jsonl"
    result = run_cli("generate", str(lively_models["llama"]), "--input", str(prompts), "--output", str(out),
                     "--max-new-tokens", "24", "--batch-size", "6")
    assert result.returncode == 0, result.stderr
    generated = [json.loads(line)["answer"] for line in out.read_text().splitlines()]
    assert len(set(generated)) > 10
    api = [ask(client, "lively", q, max_tokens=24).choices[0].message.content for q in questions]
    assert api == generated


def test_concurrent_requests_get_the_sequential_answers(client):
    jobs = [(run, q) for run in ("support", "billing", "base") for q in ANSWERS["support"]] * 2
    sequential = [ask(client, run, q, max_tokens=30).choices[0].message.content for run, q in jobs]
    concurrent: list = [None] * len(jobs)

    def worker(i: int) -> None:
        concurrent[i] = ask(client, *jobs[i], max_tokens=30).choices[0].message.content

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert concurrent == sequential
    assert sequential[0] != sequential[len(ANSWERS["support"])]  # runs differ, so a mix-up would show


def test_sampling_parameters(client):
    full = ANSWERS["billing"]["Say the word"]
    assert ask(client, "billing", "Say the word", stop=" paid").choices[0].message.content == full.split(" paid")[0]
    cut = ask(client, "billing", "Say the word", stop=["zzz", "in"])
    assert cut.choices[0].message.content == full.split("in")[0] and cut.choices[0].finish_reason == "stop"
    for limit in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        short = ask(client, "base", "hello", **limit)
        assert short.usage.completion_tokens == 2 and short.choices[0].finish_reason == "length"
    seeded = [ask(client, "base", "hello", temperature=1.0, top_p=0.95, seed=5, max_tokens=20, user="u1")
              .choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]


def _post(server, body, headers=None, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{server.url}/v1/chat/completions", content=content, timeout=60,
                      headers={"content-type": "application/json", **(headers or {})})


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def _generating_once_settled(server, seconds: float = 10.0) -> int:
    """Requests still generating, read until it reaches 0 or ``seconds`` pass: a cancelled request leaves the
    batch at the end of the engine's current step, which a busy machine can make slow."""
    deadline = time.time() + seconds
    while (generating := httpx.get(f"{server.url}/health").json()["generating"]) and time.time() < deadline:
        time.sleep(0.05)
    return generating


def test_request_errors_in_openai_shape(server):
    good = {"model": "support", "messages": [{"role": "user", "content": "hi"}]}
    assert _error(_post(server, None, raw=b'{"model": "support", "messages": ['), 400)["code"] == "invalid_json"
    assert _error(_post(server, {"model": "support"}), 400)["param"] == "messages"
    assert _error(_post(server, {"messages": good["messages"]}), 400)["code"] == "missing_required_parameter"
    assert _error(_post(server, {**good, "messages": [{"role": "robot", "content": "x"}]}), 400)["param"]
    assert _error(_post(server, {**good, "n": 2}), 400)["param"] == "n"
    assert _error(_post(server, {**good, "temperature": 5}), 400)["param"] == "temperature"
    assert _error(_post(server, {**good, "tools": [{"type": "function"}]}), 400)["param"] == "tools"
    assert _error(_post(server, {**good, "messages": [{"role": "assistant", "content": "x"}]}), 400)
    unknown = _error(_post(server, {**good, "model": "nope"}), 404)
    assert unknown["code"] == "model_not_found" and "support" in unknown["message"]
    long = {**good, "messages": [{"role": "user", "content": "word " * 600}]}
    assert _error(_post(server, long), 400)["code"] == "context_length_exceeded"
    assert _error(_post(server, {**good, "max_tokens": 100_000}), 400)["code"] == "context_length_exceeded"
    assert _error(httpx.get(f"{server.url}/v1/nothing-here"), 404)["message"].startswith("no such endpoint")
    assert _error(httpx.get(f"{server.url}/v1/chat/completions"), 405)


def test_bodies_over_the_limit_get_413_declared_or_chunked(server):
    big = json.dumps({"model": "support", "messages": [{"role": "user", "content": "x" * 2_000_000}]}).encode()
    assert _error(_post(server, None, raw=big), 413)["code"] == "request_too_large"

    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    chunked = httpx.post(f"{server.url}/v1/chat/completions", content=chunks(), timeout=60)
    assert "content-length" not in chunked.request.headers
    assert _error(chunked, 413)["code"] == "request_too_large"


def test_client_disconnect_cancels_the_generation(server):
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=60, json={
            "model": "base", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 480,
            "stream": True}) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_lines())
    deadline = time.time() + 10
    while time.time() < deadline and f"{request_id} model=base stream=True client disconnected" not in \
            server.log_path.read_text():
        time.sleep(0.05)
    assert f"{request_id} model=base stream=True client disconnected" in server.log_path.read_text()
    assert _generating_once_settled(server) == 0


def test_a_request_over_the_time_limit_gets_504(memorized, serve):
    slow = serve(str(memorized["base"]), "--timeout", "0.2")
    body = {"model": "base", "messages": [{"role": "user", "content": "go"}], "max_tokens": 480}
    assert _error(_post(slow, body), 504)["code"] == "timeout"
    with httpx.stream("POST", f"{slow.url}/v1/chat/completions", json={**body, "stream": True},
                      timeout=60) as response:
        lines = list(response.iter_lines())
    events = [line[6:] for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "timeout"
    assert _generating_once_settled(slow) == 0


def test_api_key_is_required_when_set(memorized, serve):
    keyed = serve(str(memorized["support"]), "--api-key", "s3cret")
    body = {"model": "support", "messages": [{"role": "user", "content": "Who are you?"}]}
    assert _error(_post(keyed, body), 401)["code"] == "invalid_api_key"
    assert _error(_post(keyed, body, {"authorization": "Bearer wrong"}), 401)["message"] == "wrong API key"
    assert _error(httpx.get(f"{keyed.url}/v1/models"), 401)
    assert httpx.get(f"{keyed.url}/health").status_code == 200  # for load balancers, no key
    good = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="s3cret", max_retries=0)
    assert ask(good, "support", "Who are you?").choices[0].message.content == ANSWERS["support"]["Who are you?"]
    with pytest.raises(openai.AuthenticationError):
        ask(openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="bad", max_retries=0), "support", "hi")


def test_a_full_queue_answers_503_with_retry_after(memorized, serve):
    busy = serve(str(memorized["base"]), "--max-batch", "1", "--max-waiting", "1")
    body = {"model": "base", "messages": [{"role": "user", "content": "go"}], "max_tokens": 480, "stream": True}
    statuses: list[int] = []
    retry: list[str | None] = []

    def worker() -> None:
        with httpx.stream("POST", f"{busy.url}/v1/chat/completions", json=body, timeout=60) as response:
            statuses.append(response.status_code)
            retry.append(response.headers.get("retry-after"))
            response.read()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert 503 in statuses and 200 in statuses
    assert all(r is not None and int(r) > 0 for s, r in zip(statuses, retry) if s == 503)


def test_sigterm_lets_requests_in_flight_finish(memorized, serve):
    running = serve(str(memorized["base"]))
    lines = []
    with httpx.stream("POST", f"{running.url}/v1/chat/completions", timeout=60, json={
            "model": "base", "messages": [{"role": "user", "content": "go"}], "max_tokens": 480, "stream": True,
            "stream_options": {"include_usage": True}}) as response:
        stream = response.iter_lines()
        lines.append(next(stream))
        running.process.send_signal(signal.SIGTERM)
        lines.extend(stream)
    events = [line[6:] for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 480  # not cut short by the shutdown
    # uvicorn ends the process by the signal it got, after the shutdown (as a SIGTERM'd process should)
    assert running.process.wait(30) in (0, -signal.SIGTERM)
    assert "shut down cleanly" in running.log_path.read_text()


def test_listening_beyond_this_machine_without_a_key_warns(memorized):
    # 192.0.2.1 is a documentation address this machine does not have: the warning comes, then a clear error.
    result = subprocess.run([str(BIN / "annotune"), "serve", str(memorized["base"]),
                             "--host", "192.0.2.1"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "warning: listening on 192.0.2.1 without an API key" in result.stderr
    assert "cannot listen on 192.0.2.1" in result.stderr


def test_a_port_in_use_is_a_clear_error_before_any_model_loads(memorized):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(BIN / "annotune"), "serve", str(memorized["base"]), "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"port {port} on 127.0.0.1 is already in use; pick another with --port" in result.stderr
    assert "Loading" not in result.stderr
