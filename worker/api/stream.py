"""A streamed answer (SSE) read into the shape of a plain one.

Mira cuts every non-streamed call at 30 s with an empty 408, so a long answer
can only be had as a stream, which it does not cut. Its chunks are OpenAI's
`chat.completion.chunk`, it ends with `data: [DONE]`, and it carries no usage:
the usage written is counted as Mira counts it for billing, in whitespace-
separated words, the prompt's without its system messages (MIRA_API.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from worker.domain.usage import words
from worker.errors import (
    BadResponseError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
)

if TYPE_CHECKING:  # imported where a session is made: see client.py
    import aiohttp

# Mira's answer when its GPU queue is full, as a stream: one event, no [DONE].
QUEUE_FULL_RETRY_AFTER_S = 10.0
_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class Asked:
    """What a streamed answer needs of its request: the model asked for, and
    the prompt's words as Mira bills them (its system messages left out)."""

    model: object = None
    prompt_words: int = 0

    @classmethod
    def of(cls, request: object) -> Asked:
        """Read from the request's JSON object (anything else asks nothing)."""
        if not isinstance(request, dict):
            return cls()
        messages = request.get("messages")
        prompt = sum(
            words(m.get("content"))
            for m in (messages if isinstance(messages, list) else ())
            if isinstance(m, dict) and m.get("role") != "system"
        )
        return cls(request.get("model"), prompt)


def as_stream(payload: bytes) -> tuple[bytes, Asked]:
    """The same request, asking for a stream; and what its answer needs of it."""
    request = orjson.loads(payload)
    request["stream"] = True
    return orjson.dumps(request), Asked.of(request)


class StreamedAnswer:
    """The events of one stream, gathered into a `chat.completion` body."""

    def __init__(self, asked: Asked, request_id: str | None) -> None:
        self._asked = asked
        self._request_id = request_id
        self._parts: list[str] = []
        self._head: dict[str, object] = {}
        self._finish: object = None
        self.done = False

    def add(self, data: bytes) -> None:
        """One `data:` field.

        Raises:
            RateLimitedError: the server's queue is full (`queue_full`).
            ServerError: any other error event.
            BadResponseError: an event that is not a JSON object.
        """
        if data == b"[DONE]":
            self.done = True
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            raise BadResponseError("a stream event that is not a JSON object")
        error = event.get("error")
        if error is not None:
            raise _refusal(error, self._request_id)
        if not self._head:
            self._head = {k: event.get(k) for k in ("id", "created", "model")}
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                self._parts.append(content)
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]

    def body(self) -> dict[str, object]:
        """The answer as a non-streamed call would have given it."""
        content = "".join(self._parts)
        prompt, completion = self._asked.prompt_words, words(content)
        return {
            "id": self._head.get("id"),
            "object": "chat.completion",
            "created": self._head.get("created"),
            "model": self._head.get("model") or self._asked.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": self._finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


async def read_stream(
    resp: aiohttp.ClientResponse,
    asked: Asked,
    *,
    max_bytes: int,
) -> dict[str, object]:
    """Read an SSE answer to its end.

    Raises:
        TransportError: the stream ended before `[DONE]`.
        RateLimitedError, ServerError, BadResponseError: as StreamedAnswer.add.
        ResponseTooLargeError: over `max_bytes`.
    """
    request_id = resp.headers.get("x-request-id")
    answer = StreamedAnswer(asked, request_id)
    size, pending = 0, b""
    # Chunks, not lines: a server's endless line must not fill memory first.
    async for chunk in resp.content.iter_chunked(_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLargeError(
                f"the streamed answer is over --max-response-bytes ({max_bytes} "
                "bytes); it was not read further",
                status=resp.status,
                request_id=request_id,
            )
        *lines, pending = (pending + chunk).split(b"\n")
        if _feed(answer, lines):
            return answer.body()
    if _feed(answer, [pending]):  # a last line with no newline before the end
        return answer.body()
    raise TransportError(
        "the stream ended before [DONE]", status=resp.status, request_id=request_id
    )


def _feed(answer: StreamedAnswer, lines: list[bytes]) -> bool:
    """Add the `data:` fields of `lines`; True once `[DONE]` came."""
    for raw in lines:
        line = raw.strip()
        if line.startswith(b"data:"):
            answer.add(line[5:].strip())
            if answer.done:
                return True
    return False


def _refusal(error: object, request_id: str | None) -> RateLimitedError | ServerError:
    detail = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = f"stream error: {detail or error}"
    if code == "queue_full":
        return RateLimitedError(
            message, retry_after_s=QUEUE_FULL_RETRY_AFTER_S, request_id=request_id
        )
    return ServerError(message, request_id=request_id)
