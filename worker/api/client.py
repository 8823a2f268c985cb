"""ChatClient: `complete` makes exactly one attempt.

A plain call on a direct route goes on the lean path (wire.py). aiohttp, for
streams and proxies, is imported and its session opened only when the first
such call comes: a run that never needs it starts a fifth of a second sooner
(its import and the TLS contexts it builds as it loads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from yarl import URL

from worker.api.body import (
    MAX_ERROR_BODY_BYTES,
    decode_error_body,
    parse_answer,
    read_at_most,
)
from worker.api.keys import KeyRing
from worker.api.network import new_session, route_for, tls_context, wire_to
from worker.api.status import error_for_status
from worker.api.stream import as_stream, read_stream
from worker.api.wire import Wire
from worker.config import Settings
from worker.domain.answer import Answer, check_answer
from worker.errors import (
    ResponseTooLargeError,
    TransportError,
    UntrustedServerError,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ChatClient", "Client", "make_client"]


class ChatClient:
    """Sends chat-completion requests; knows HTTP, not queues or retries.

    The Authorization header is the key ring's, read at each request (a
    rotated key is used from the next one), and never logged; redirects are
    never followed, so it cannot travel to another host.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | KeyRing,
        *,
        timeout_s: float,
        max_connections: int,
        max_response_bytes: int = 8 * 1024 * 1024,
        ca_bundle: Path | None = None,
        wire: bool = True,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._ca_bundle = ca_bundle
        self._route = route_for(self._url)
        # Parsed once, not by aiohttp on every request.
        self._target = URL(self._url)
        # The key goes on each request, never on the session: see new_session.
        self.keys = api_key if isinstance(api_key, KeyRing) else KeyRing(api_key)
        self._through = self._route.through
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._open = False
        # Plain calls on a direct route take the lean path (wire.py); through
        # a proxy, and for streams, aiohttp's.
        self._use_wire = wire and self._route.proxy is None
        self._wire: Wire | None = None

    def __repr__(self) -> str:
        return f"ChatClient(url={self._url!r})"

    async def __aenter__(self) -> ChatClient:
        """Open the lean path (aiohttp's session waits for its first call).

        Raises:
            ConfigError: the CA bundle cannot be used.
        """
        if self._ca_bundle is not None:
            tls_context(self._ca_bundle)  # one that cannot be used fails here
        if self._use_wire:
            self._wire = wire_to(
                self._target, self._ca_bundle, limit=self._max_connections
            )
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        """POST one chat-completion request body (already serialised JSON),
        asking for a stream when `stream` (read whole, into the same shape).

        Raises:
            RetryableError: 408/409/429/5xx, a transport failure, a 2xx whose
                body is not a JSON object, an upstream-error text or no answer.
            FatalError: 401, 402, or a 429 saying the quota is spent.
            JobError: any other refusal, redirects, a withheld answer.
        """
        assert self._open, "use ChatClient as an async context manager"
        try:
            if self._wire is not None and not stream:
                reply = await self._plain_wire(self._wire, payload)
            else:
                reply = await self._through_aiohttp(payload, stream=stream)
        except TimeoutError as exc:
            raise TransportError(f"request timed out{self._through}") from exc
        check_answer(reply.body, reply.status, reply.request_id)
        return reply

    async def _through_aiohttp(self, payload: bytes, *, stream: bool) -> Answer:
        import aiohttp  # see the module's docstring

        if self._session is None:
            self._session = new_session(
                self._route,
                {"Content-Type": "application/json"},
                ca_bundle=self._ca_bundle,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                limit=self._max_connections,
            )
        try:
            if stream:
                return await self._streamed(self._session, payload)
            return await self._plain(self._session, payload)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise UntrustedServerError(
                f"the server's TLS certificate is not trusted{self._through}: "
                f"{exc.certificate_error}; name its CA with --ca-bundle or "
                "SSL_CERT_FILE"
            ) from exc
        except (
            aiohttp.ClientError,
            ConnectionError,
            asyncio.IncompleteReadError,
        ) as exc:
            raise TransportError(
                f"{type(exc).__name__}: {exc}{self._through}",
                reached_server=not isinstance(exc, aiohttp.ClientConnectorError),
            ) from exc

    async def _plain_wire(self, wire: Wire, payload: bytes) -> Answer:
        async with asyncio.timeout(self._timeout_s):
            reply = await wire.post(
                self.keys.headers,
                payload,
                ok_limit=self._max_response_bytes,
                error_limit=MAX_ERROR_BODY_BYTES,
            )
        return self._answer(reply.status, reply.headers, reply.body, reply.complete)

    def _answer(
        self, status: int, headers: Mapping[str, str], raw: bytes, complete: bool
    ) -> Answer:
        """A plain call's answer from its status, headers and body (`complete`:
        read to its end within the limit its status allowed), either path's.

        Raises:
            WorkerError: as `error_for_status` says for a refusal; a 2xx past
                --max-response-bytes, or whose body is no JSON object.
        """
        request_id = headers.get("x-request-id")
        if not 200 <= status < 300:
            raise error_for_status(
                status, headers, decode_error_body(raw), request_id=request_id
            )
        if not complete:
            raise ResponseTooLargeError(
                "the answer is over --max-response-bytes "
                f"({self._max_response_bytes} bytes, decompressed); it was not "
                "read further",
                status=status,
                request_id=request_id,
            )
        return parse_answer(status, raw, request_id)

    async def _plain(self, session: aiohttp.ClientSession, payload: bytes) -> Answer:
        async with self._route.request(
            session,
            "POST",
            self._target,
            self.keys.headers,
            data=payload,
            timeout=session.timeout,
        ) as resp:
            return await self._read_whole(resp)

    async def _read_whole(self, resp: aiohttp.ClientResponse) -> Answer:
        """An aiohttp response read in one piece, within the limit its status
        allows, and taken as a plain call's answer."""
        ok = 200 <= resp.status < 300
        limit = self._max_response_bytes if ok else MAX_ERROR_BODY_BYTES
        raw, complete = await read_at_most(resp, limit)
        return self._answer(resp.status, resp.headers, raw, complete)

    async def _streamed(self, session: aiohttp.ClientSession, payload: bytes) -> Answer:
        import aiohttp

        # A stream is not cut by the total timeout, only by a silence that long.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout_s, sock_read=self._timeout_s
        )
        body, asked = as_stream(payload)
        async with self._route.request(
            session, "POST", self._target, self.keys.headers, data=body, timeout=timeout
        ) as resp:
            ok = 200 <= resp.status < 300
            if not ok or resp.content_type != "text/event-stream":
                return await self._read_whole(resp)  # a refusal, or in one piece
            answer = await read_stream(resp, asked, max_bytes=self._max_response_bytes)
        return Answer(
            resp.status, answer, resp.headers.get("x-request-id"), streamed=True
        )


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

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer: ...


def make_client(settings: Settings, keys: KeyRing) -> ChatClient:
    """The real client, as the settings ask."""
    return ChatClient(
        settings.base_url,
        keys,
        timeout_s=settings.request_timeout_s,
        max_connections=settings.concurrency,
        max_response_bytes=settings.max_response_bytes,
        ca_bundle=settings.ca_bundle,
    )
