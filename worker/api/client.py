"""ChatClient: one aiohttp session; `complete` makes exactly one attempt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import aiohttp
import orjson

from worker import __version__
from worker.api.answer import check_answer
from worker.api.status import error_for_status
from worker.api.stream import as_stream, read_stream
from worker.config import Settings
from worker.errors import (
    BadResponseError,
    ResponseTooLargeError,
    TransportError,
    UnrecordableResponseError,
)

_MAX_ERROR_TEXT_CHARS = 2000
# An error body is read only this far: its status says what to do.
_MAX_ERROR_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A 2xx answer: its status, parsed JSON body and request id."""

    status: int
    body: dict[str, Any]
    request_id: str | None
    streamed: bool = False  # assembled from a stream (SSE)


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
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


def _decode_error_body(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:_MAX_ERROR_TEXT_CHARS] if text else None


class ChatClient:
    """Sends chat-completion requests; knows HTTP, not queues or retries.

    The Authorization header lives on the session and is never logged; redirects
    are never followed, so it cannot travel to another host.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float,
        max_connections: int,
        max_response_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ChatClient(url={self._url!r})"

    async def __aenter__(self) -> ChatClient:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "User-Agent": f"mira-batch/{__version__}",
                "Content-Type": "application/json",
            },
            # Status, Retry-After and the error body are read by us, not raised.
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, payload: bytes, *, stream: bool = False) -> ChatReply:
        """POST one chat-completion request body (already serialised JSON),
        asking for a stream when `stream` (read whole, into the same shape).

        Raises:
            RetryableError: 408/409/429/5xx, a transport failure, a 2xx whose
                body is not a JSON object, an upstream-error text or no answer.
            FatalError: 401, 402, or a 429 saying the quota is spent.
            JobError: any other refusal, redirects, a withheld answer.
        """
        assert self._session is not None, "use ChatClient as an async context manager"
        try:
            if stream:
                reply = await self._streamed(self._session, payload)
            else:
                reply = await self._plain(self._session, payload)
        except TimeoutError as exc:
            raise TransportError("request timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        check_answer(reply.body, reply.status, reply.request_id)
        return reply

    async def _plain(self, session: aiohttp.ClientSession, payload: bytes) -> ChatReply:
        async with session.post(self._url, data=payload, allow_redirects=False) as resp:
            status = resp.status
            request_id = resp.headers.get("x-request-id")
            ok = 200 <= status < 300
            limit = self._max_response_bytes if ok else _MAX_ERROR_BODY_BYTES
            raw, complete = await _read_at_most(resp, limit)
            if ok and not complete:
                raise ResponseTooLargeError(
                    f"the answer is over --max-response-bytes ({limit} bytes, "
                    "decompressed); it was not read further",
                    status=status,
                    request_id=request_id,
                )
            if not ok:
                raise error_for_status(
                    status, resp.headers, _decode_error_body(raw), request_id=request_id
                )
        return _answer(status, raw, request_id)

    async def _streamed(
        self, session: aiohttp.ClientSession, payload: bytes
    ) -> ChatReply:
        # A stream is not cut by the total timeout, only by a silence that long.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout_s, sock_read=self._timeout_s
        )
        body, request = as_stream(payload)
        async with session.post(
            self._url, data=body, allow_redirects=False, timeout=timeout
        ) as resp:
            status = resp.status
            request_id = resp.headers.get("x-request-id")
            if not 200 <= status < 300:
                raw, _ = await _read_at_most(resp, _MAX_ERROR_BODY_BYTES)
                raise error_for_status(
                    status, resp.headers, _decode_error_body(raw), request_id=request_id
                )
            if resp.content_type != "text/event-stream":
                raw, _ = await _read_at_most(resp, self._max_response_bytes)
                return _answer(status, raw, request_id)  # it answered in one piece
            answer = await read_stream(
                resp, request, max_bytes=self._max_response_bytes
            )
        return ChatReply(status, answer, request_id, streamed=True)


def _answer(status: int, raw: bytes, request_id: str | None) -> ChatReply:
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
    return ChatReply(status, body, request_id)


class Client(Protocol):
    """What the run needs of an API client: a session, and one attempt per call."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

    async def complete(self, payload: bytes, *, stream: bool = False) -> ChatReply: ...


def make_client(settings: Settings, api_key: str) -> ChatClient:
    """The real client, as the settings ask."""
    return ChatClient(
        settings.base_url,
        api_key,
        timeout_s=settings.request_timeout_s,
        max_connections=settings.concurrency,
        max_response_bytes=settings.max_response_bytes,
    )
