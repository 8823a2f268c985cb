"""Reading a response's body within bounds, and a 2xx body as an answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from worker.domain.answer import Answer
from worker.errors import BadResponseError, UnrecordableResponseError

if TYPE_CHECKING:  # imported where a session is made: see client.py
    import aiohttp

_MAX_ERROR_TEXT_CHARS = 2000
# An error body is read only this far: its status says what to do.
MAX_ERROR_BODY_BYTES = 64 * 1024


async def read_at_most(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """The body, decompressed, up to `limit` bytes; and whether that was all of it.

    Read in chunks as they arrive (aiohttp decompresses each step in bounded
    pieces), so memory stays near `limit` whatever the server sends: a huge
    body, an endless chunked one, or a gzip bomb.
    """
    declared = resp.content_length
    if declared is not None and "Content-Encoding" not in resp.headers:
        # The framing already bounds the body: read it whole (the fast path).
        if declared > limit:
            return b"", False
        return await resp.read(), True
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def decode_error_body(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:_MAX_ERROR_TEXT_CHARS] if text else None


def parse_answer(status: int, raw: bytes, request_id: str | None) -> Answer:
    """A 2xx body read as an answer.

    Raises:
        UnrecordableResponseError: JSON nested too deep to read.
        BadResponseError: the body is not a JSON object.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            # The same answer would come back nested as deep: paying for it
            # again cannot help.
            raise UnrecordableResponseError(
                f"HTTP {status} with JSON nested too deep to read ({exc})",
                status=status,
                request_id=request_id,
            ) from None
        body = None
    if not isinstance(body, dict):
        raise BadResponseError(
            f"HTTP {status} with a body that is not a JSON object ({len(raw)} bytes)",
            status=status,
            request_id=request_id,
        )
    return Answer(status, body, request_id)
