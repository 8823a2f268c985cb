"""Streamed answers (SSE) as Mira's backend sends them (routes/completions.rs):
`chat.completion.chunk` events, a last chunk with `finish_reason: "stop"`,
then `data: [DONE]`; a full GPU queue is one error event and no [DONE]."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

QUEUE_FULL = {
    "error": {
        "message": "Server is at capacity, please try again later",
        "type": "server_error",
        "code": "queue_full",
    }
}


def _event(data: object) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _chunk(answer: dict[str, Any], delta: dict[str, str], finish: str | None) -> bytes:
    return _event(
        {
            "id": answer["id"],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": answer["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


async def stream_answer(
    request: web.Request,
    answer: dict[str, Any],
    *,
    delay_s: float,
    sleep: Callable[[float], Awaitable[None]],
) -> web.StreamResponse:
    """Send `answer` word by word after `delay_s`, as Mira streams (no usage)."""
    response = await _open(request)
    if delay_s > 0:
        await sleep(delay_s)
    content = answer["choices"][0]["message"]["content"] or ""
    finish = answer["choices"][0]["finish_reason"]
    words = content.split(" ")
    for index, word in enumerate(words):
        piece = word if index == 0 else " " + word
        await response.write(_chunk(answer, {"content": piece}, None))
    await response.write(_chunk(answer, {}, finish))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def stream_queue_full(request: web.Request) -> web.StreamResponse:
    """A full GPU queue, as a stream sees it: a 200 with one error event."""
    response = await _open(request)
    await response.write(_event(QUEUE_FULL))
    await response.write_eof()
    return response
