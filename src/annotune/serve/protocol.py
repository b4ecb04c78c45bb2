"""The OpenAI chat-completions schema, as far as annotune serves it, and its one error shape.

Requests are validated here into a :class:`ChatRequest`; anything wrong becomes an :class:`ApiError` that says
which parameter and why, answered as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Parameters of OpenAI's API that change what an answer is, which annotune does not do; refused when set.
UNSUPPORTED = {
    "tools": None, "functions": None, "tool_choice": None, "logprobs": False, "top_logprobs": None,
    "logit_bias": None, "response_format": None, "presence_penalty": 0, "frequency_penalty": 0, "audio": None,
    "modalities": None, "prediction": None, "best_of": None,
}


class ApiError(Exception):
    """An error answered in OpenAI's shape with an HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None

    def text(self, index: int) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for j, part in enumerate(self.content):
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{index}].content[{j}]: only text parts are supported "
                                    f"(got type {part.get('type')!r})", param=f"messages[{index}].content")
            parts.append(part["text"])
        return "".join(parts)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("give at most 4 stop strings, none empty")
        return stops

    def conversation(self) -> list[dict[str, str]]:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text(i)}
                    for i, m in enumerate(self.messages)]
        if messages[-1]["role"] != "user":
            raise ApiError(400, "the last message must be from the user", param="messages")
        return messages


def parse_chat_request(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        missing = first["type"] == "missing"
        raise ApiError(400, f"{param}: {'this field is required' if missing else message}", param=param,
                       code="missing_required_parameter" if missing else "invalid_value") from None
    if request.n != 1:
        raise ApiError(400, "n: only n=1 is supported; send several requests for several answers", param="n",
                       code="unsupported_value")
    for name, neutral in UNSUPPORTED.items():
        if (request.model_extra or {}).get(name, neutral) not in (neutral, None):
            raise ApiError(400, f"{name}: not supported by this server", param=name, code="unsupported_parameter")
    return request


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
