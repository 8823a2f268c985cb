"""What the simulator answers: completions, Mira's refusals of a body, and faults."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from worker.sim.faults import MODELS, PLAN_MODELS, Faults

MAX_MESSAGES = 200
MAX_CONTENT_CHARS = 32_000
CUT = web.Response(status=200)  # marker: cut the connection mid-body


def detail_response(
    status: int, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An error in Mira's shape: `{"detail": "..."}`."""
    return web.json_response({"detail": detail}, status=status, headers=headers)


def fault_response(outcome: str) -> web.Response | None:
    """The response an injected fault gives; None drops the connection, CUT cuts it."""
    if outcome == "quota":
        body = {
            "error": {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        }
        return web.json_response(body, status=429)
    if outcome == "500":
        return detail_response(500, "Internal server error")
    if outcome == "502":
        return web.Response(
            status=502,
            text="<html><body><h1>502 Bad Gateway</h1></body></html>",
            content_type="text/html",
        )
    if outcome == "503":
        return detail_response(503, "Service temporarily unavailable")
    if outcome == "malformed":
        return web.Response(
            body=b'{"id": "chatcmpl-bad", "choices": [{"mess',
            content_type="application/json",
        )
    return CUT if outcome == "truncate" else None


def check_request(body: dict[str, Any], plan: str) -> web.Response | None:
    """Mira's refusals of a request body: unknown model, plan, messages, range."""
    model = body.get("model", "mira")
    if model not in MODELS:
        return detail_response(400, f"Unknown model: {model}")
    if model not in PLAN_MODELS[plan]:
        return detail_response(403, f"Your plan does not include {model}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return detail_response(422, "messages: field required")
    if len(messages) > MAX_MESSAGES:
        return detail_response(422, f"Too many messages (max {MAX_MESSAGES})")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return detail_response(422, "Each message needs a role and string content")
        if len(message["content"]) > MAX_CONTENT_CHARS:
            return detail_response(
                422, f"Message content over {MAX_CONTENT_CHARS} characters"
            )
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, (int, float)) and 0 <= temperature <= 2
    ):
        return detail_response(400, "temperature must be between 0 and 2")
    return None


# What Mira's backend writes into a 200 in place of an answer (MIRA_API.md).
BAD_ANSWERS = {
    "upstream_error": "Ошибка: upstream returned 502 Bad Gateway",
    "moderated": "I cannot provide that response.",
    "empty": "",
}


def peek(raw: bytes) -> tuple[bool, float | None]:
    """Whether the request asks for a stream, and the latency it scripts for
    itself (`x_sim_latency_ms`: a long answer, for tests and rehearsals)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None
    if not isinstance(body, dict):
        return False, None
    latency = body.get("x_sim_latency_ms")
    scripted = float(latency) / 1000 if isinstance(latency, int | float) else None
    return body.get("stream") is True, scripted


def timed_out(faults: Faults) -> web.Response:
    """The server's timeout: the source's is an empty 408 from its timeout layer."""
    if faults.behaviour == "source":
        return web.Response(status=408)
    return detail_response(408, "Request timed out")


def echo(body: dict[str, Any]) -> str:
    """What the simulator's model says: the last user message, echoed."""
    messages = body["messages"]
    last = next(
        (m["content"] for m in reversed(messages) if m.get("role") == "user"),
        messages[-1]["content"],
    )
    return f"Echo: {last[:400]}"


Choice = tuple[str | None, str, list[dict[str, Any]] | None]


def completion(
    body: dict[str, Any],
    faults: Faults,
    text: str | None = None,
    *,
    choices: list[Choice] | None = None,
) -> dict[str, Any]:
    """An OpenAI-shaped completion that echoes the last user message (or says
    `text`, or gives these choices: content, finish reason, tool calls), with
    usage: whitespace-separated words as the source counts."""
    messages = body["messages"]
    if choices is None:
        choices = [(echo(body) if text is None else text, "stop", None)]
    said = " ".join(content or "" for content, _, _ in choices)
    if faults.behaviour == "source":
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        completion_tokens = len(said.split())
    else:
        prompt_tokens = (
            sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages) + 3
        )
        completion_tokens = max(1, len(said) // 4)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mira"),
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": content,
                    **({"tool_calls": calls} if calls else {}),
                },
                "finish_reason": finish,
            }
            for index, (content, finish, calls) in enumerate(choices)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def models_response(request: web.Request) -> web.Response:
    """`GET /v1/models` in the OpenAI list shape; it needs no key, as Mira's."""
    data = [
        {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "mira"}
        for name in MODELS
    ]
    return web.json_response(
        {"object": "list", "data": data}, headers={"x-request-id": str(uuid.uuid4())}
    )


async def break_connection(
    request: web.Request, *, mid_body: bool
) -> web.StreamResponse:
    """Drop the connection with no answer, or cut it in the middle of a body."""
    transport = request.transport
    assert transport is not None
    if not mid_body:
        transport.abort()
        return web.Response(status=500)  # never reaches the client
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 400
    await response.prepare(request)
    await response.write(b'{"id": "chatcmpl-cut", "object": "chat.com')
    await asyncio.sleep(0)
    transport.abort()
    return response


def read_body(
    raw: bytes, request: web.Request, plan: str
) -> dict[str, Any] | web.Response:
    """The request's JSON body, or the refusal Mira answers it with."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return detail_response(400, "Malformed JSON body")
    if not isinstance(body, dict):
        return detail_response(400, "Request body must be a JSON object")
    scripted = body.get("x_sim_status")
    if isinstance(scripted, int) and scripted >= 400:
        detail = f"scripted failure {scripted}"
        if body.get("x_sim_echo_auth"):
            # A careless server that quotes the credential back: clients
            # must not copy it into their files or logs.
            detail += f" for {request.headers.get('Authorization', '')}"
        return detail_response(scripted, detail)
    return check_request(body, plan) or body
