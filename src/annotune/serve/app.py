"""The OpenAI-compatible HTTP layer over the engines, and the chat page. It holds no model logic: requests are
validated (:mod:`annotune.serve.protocol`), handed to the engine that serves the named model, and its events
are written back as JSON or server-sent events."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from annotune.generation.config import GenerationConfig
from annotune.generation.engine import ContextLengthError, Engine, EngineBusy, GenerationResult, ServedModel
from annotune.serve.protocol import ApiError, ChatRequest, parse_chat_request, usage
from annotune.web import SecurityHeaders, with_security_headers

log = logging.getLogger("annotune.serve")
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServerSettings:
    api_key: str | None = None
    max_body: int = 1024 * 1024  # bytes in one request body
    timeout: float = 300.0  # seconds one request may take, queueing included
    retry_after: int = 2  # seconds a client is asked to wait when the queue is full


class Registry:
    """Model name -> (engine, served model), over every engine the server runs."""

    def __init__(self, engines: list[Engine]):
        self.engines = engines
        self.models = {name: (engine, served) for engine in engines for name, served in engine.models.items()}
        self.created = int(time.time())

    def find(self, name: str) -> tuple[Engine, ServedModel]:
        if name not in self.models:
            raise ApiError(404, f"the model {name!r} does not exist; this server has: {', '.join(self.models)} "
                                "(GET /v1/models lists them)", param="model", code="model_not_found")
        return self.models[name]

    def card(self, name: str) -> dict:
        served = self.models[name][1]
        return {"id": name, "object": "model", "created": self.created, "owned_by": "annotune",
                "parent": served.parent, "root": served.parent or name, "max_model_len": served.context,
                "system_prompt": served.system}


def create_app(engines: list[Engine], settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    registry = Registry(engines)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for engine in engines:  # the server has stopped taking requests and finished the ones in flight
            await asyncio.to_thread(engine.close)
        log.info("shut down cleanly: every request answered, engines stopped")

    app = FastAPI(title="annotune model server", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.registry, app.state.settings = registry, settings
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        generating = sum(e.load[0] for e in engines)
        waiting = sum(e.load[1] for e in engines)
        return {"status": "ok", "models": list(registry.models), "generating": generating, "waiting": waiting}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        _authorize(request, settings)
        return {"object": "list", "data": [registry.card(name) for name in registry.models]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str, request: Request) -> dict:
        _authorize(request, settings)
        registry.find(name)
        return registry.card(name)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _authorize(request, settings)
        chat = parse_chat_request(await _read_body(request, settings.max_body))
        engine, served = registry.find(chat.model)
        cfg, budget_given = _generation_config(chat)
        try:
            served, prompt, cfg = engine.prepare(chat.model, chat.conversation(), cfg, budget_given)
            events = engine.astream(served, prompt, cfg)
        except ContextLengthError as exc:
            raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
        except EngineBusy as exc:
            raise ApiError(503, str(exc), type="server_error", code="server_busy",
                           headers={"retry-after": str(settings.retry_after)}) from None
        call = Call(f"chatcmpl-{secrets.token_hex(12)}", chat, served, events, settings.timeout)
        if chat.stream:
            return StreamingResponse(call.sse(), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache", "x-request-id": call.id})
        return JSONResponse(await call.complete(request), headers={"x-request-id": call.id})

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
    return app


class Call:
    """One chat completion in flight: its events, turned into a response, and a log line when it ends."""

    def __init__(self, call_id: str, chat: ChatRequest, served: ServedModel, events, timeout: float):
        self.id, self.chat, self.served, self.events, self.timeout = call_id, chat, served, events, timeout
        self.created = int(time.time())
        self.started = time.perf_counter()

    async def complete(self, request: Request) -> dict:
        task = asyncio.ensure_future(self._result())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.25)
                if done:
                    result = task.result()
                    break
                if await request.is_disconnected():
                    self._log(None, "client disconnected")
                    return {}
                if time.perf_counter() - self.started > self.timeout:
                    self._log(None, "timeout")
                    raise _timeout(self.timeout)
        finally:
            task.cancel()
            self.events.cancel()
        self._log(result)
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.chat.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                             "finish_reason": _finish(result), "logprobs": None}],
                "usage": usage(result.prompt_tokens, result.completion_tokens)}

    async def _result(self) -> GenerationResult:
        async for kind, value in self.events:
            if kind == "done":
                return value
        raise RuntimeError("the engine ended a request without a result")

    async def sse(self):
        result, outcome = None, "client disconnected"
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            events = aiter(self.events)
            while result is None:
                left = self.timeout - (time.perf_counter() - self.started)
                kind, value = await asyncio.wait_for(anext(events), max(left, 0.001))
                if kind == "text":
                    yield self._chunk({"content": value})
                else:
                    result = value
            yield self._chunk({}, _finish(result))
            if self.chat.stream_options and self.chat.stream_options.include_usage:
                yield _event({**self._head(), "choices": [],
                              "usage": usage(result.prompt_tokens, result.completion_tokens)})
            outcome = None
        except TimeoutError:
            outcome = "timeout"
            yield _event(_timeout(self.timeout).body())
        except Exception as exc:  # noqa: BLE001 - the status line is sent; the client gets the error in the stream
            outcome = f"failed: {exc}"
            log.exception("%s failed", self.id)
            yield _event(ApiError(500, f"generation failed: {exc}", type="server_error").body())
        finally:
            self.events.cancel()
            self._log(result, outcome)
        yield "data: [DONE]\n\n"

    def _head(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.chat.model,
                "system_fingerprint": None}

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        return _event({**self._head(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                                    "logprobs": None}]})

    def _log(self, result: GenerationResult | None, outcome: str | None = None) -> None:
        seconds = time.perf_counter() - self.started
        if result is None:
            log.info("%s model=%s stream=%s %s after %.2fs", self.id, self.chat.model, self.chat.stream, outcome,
                     seconds)
            return
        ttft = f"{result.first_token_seconds:.2f}s" if result.first_token_seconds is not None else "-"
        route = f" route={result.route}" if result.route else ""
        log.info("%s model=%s stream=%s prompt_tokens=%d completion_tokens=%d finish=%s ttft=%s latency=%.2fs%s",
                 self.id, self.chat.model, self.chat.stream, result.prompt_tokens, result.completion_tokens,
                 result.finish_reason, ttft, seconds, route)


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _finish(result: GenerationResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _timeout(seconds: float) -> ApiError:
    return ApiError(504, f"the answer took longer than the server's limit of {seconds:g} s; ask for fewer tokens "
                         "(max_tokens) or start the server with a longer --timeout", type="server_error",
                    code="timeout")


def _generation_config(chat: ChatRequest) -> tuple[GenerationConfig, bool]:
    """The request's settings over the documented defaults; whether it set a token budget itself."""
    budget = chat.max_completion_tokens or chat.max_tokens
    values = {"max_new_tokens": budget, "temperature": chat.temperature, "top_p": chat.top_p, "stop": chat.stop,
              "seed": chat.seed}
    return GenerationConfig(**{k: v for k, v in values.items() if v is not None}), budget is not None


def _authorize(request: Request, settings: ServerSettings) -> None:
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not given:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", code="invalid_api_key",
                       type="authentication_error")
    if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
        raise ApiError(401, "wrong API key", code="invalid_api_key", type="authentication_error")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is over this server's limit of {limit} bytes; send a shorter "
                         "conversation or start the server with a larger --max-body", code="request_too_large")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 400 and exc.status != 404:
            log.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.code or exc.type)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(ApiError(exc.status_code, message).body(), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return with_security_headers(JSONResponse(
            ApiError(500, f"internal error: {exc.__class__.__name__}", type="server_error").body(), status_code=500))
