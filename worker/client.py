"""ChatClient: one aiohttp session; `complete` makes exactly one attempt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from worker import __version__
from worker.errors import BadResponseError, TransportError, error_for_status

_MAX_ERROR_TEXT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A 2xx answer: its status, parsed JSON body and request id."""

    status: int
    body: dict[str, Any]
    request_id: str | None


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
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
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

    async def complete(self, payload: bytes) -> ChatReply:
        """POST one chat-completion request body (already serialised JSON).

        Raises:
            RetryableError: 408/409/429/5xx, a transport failure, or a 2xx whose
                body is not a JSON object.
            FatalError: 401, 402, or a 429 saying the quota is spent.
            JobError: any other refusal, and redirects.
        """
        assert self._session is not None, "use ChatClient as an async context manager"
        try:
            async with self._session.post(
                self._url, data=payload, allow_redirects=False
            ) as resp:
                raw = await resp.read()
                status = resp.status
                request_id = resp.headers.get("x-request-id")
                headers = resp.headers
        except TimeoutError as exc:
            raise TransportError("request timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                raise BadResponseError(
                    f"HTTP {status} with a body that is not a JSON object "
                    f"({len(raw)} bytes)",
                    status=status,
                    request_id=request_id,
                )
            return ChatReply(status, body, request_id)
        raise error_for_status(
            status, headers, _decode_error_body(raw), request_id=request_id
        )
