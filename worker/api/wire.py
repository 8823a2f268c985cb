"""Plain HTTP/1.1 POSTs on kept-alive connections: the run's hot path.

A batch posts one route thousands of times a second, and aiohttp's client
spends several times the CPU of the exchange itself on each call (bench/:
one core posts 12,600 requests/s this way against 3,200 through
`ClientSession.post`). So a plain call on a direct route comes here: the
request is written as bytes, and the answer is parsed by httptools (llhttp,
Node's parser), bounded as it arrives; the account routes are read the same
way. Streams, and anything through a proxy, stay on aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import httptools
from multidict import CIMultiDict
from yarl import URL

from worker.errors import TransportError, UntrustedServerError

# A head longer than this is no answer of a chat-completion server's.
MAX_HEAD_BYTES = 64 * 1024
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, slots=True)
class Reply:
    """A status, its headers, and the body decoded up to the limit;
    `complete` is False when the body went past it (only a prefix is kept)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    complete: bool


class _Unusable(Exception):
    """The answer cannot be read (a malformed head or body)."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection: writes a request, parses its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._reset(0, 0)
        self.closed = False

    def _reset(self, ok_limit: int, error_limit: int) -> None:
        self._ok_limit = ok_limit
        self._error_limit = error_limit
        self._limit = ok_limit
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._head_bytes = 0
        self._chunks: list[bytes] = []
        self._size = 0  # of the body as decoded
        self._decoder: zlib._Decompress | None = None
        self.over = False  # the body went past the limit
        self.headers_done = False
        self.done = False
        self.keep_alive = False

    # -- the exchange ---------------------------------------------------------

    async def exchange(self, request: bytes, ok_limit: int, error_limit: int) -> Reply:
        """Write `request`, and read its answer (raises as the caller maps)."""
        assert self.transport is not None
        self._reset(ok_limit, error_limit)
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        await waiter
        return Reply(self.status, self.headers, b"".join(self._chunks), not self.over)

    def reusable(self) -> bool:
        """Whether the next request may go on this connection."""
        return self.done and self.keep_alive and not self.over and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, failure: BaseException | None = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if failure is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(failure)

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: the stream is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_Unusable("the server switched protocols"))
        except (httptools.HttpParserError, _Unusable) as exc:
            self._fail(exc if isinstance(exc, _Unusable) else _Unusable(str(exc)))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        if self.headers_done and _until_close(self.headers) and not self.done:
            self.done = True  # a body delimited by the close: it is all here
            self._finish()
            return
        self._finish(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self._finish(exc)
        self.close()

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers = CIMultiDict()
        self._head_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _Unusable(f"a head over {MAX_HEAD_BYTES} bytes")
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        ok = 200 <= self.status < 300
        self._limit = self._ok_limit if ok else self._error_limit
        self.headers_done = self.status >= 200  # a 1xx is followed by the answer
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        wbits = _DECODERS.get(encoding)
        self._decoder = None if wbits is None else zlib.decompressobj(wbits)
        declared = self.headers.get("Content-Length", "")
        if ok and declared.isdigit() and int(declared) > self._limit:
            # Not read at all: the framing says the answer is too long (of a
            # refusal, the start is kept: it says why).
            self.over = True
            self._finish()
            self.close()

    def on_body(self, body: bytes) -> None:
        if self.over:
            return
        room = self._limit - self._size
        if self._decoder is not None:
            # Decoded as it arrives, never past the limit: a bomb stays small,
            # and is cut before the server has sent the rest of it.
            try:
                body = self._decoder.decompress(body, room + 1)
            except zlib.error as exc:
                raise _Unusable(f"a body that does not decompress: {exc}") from None
        self._size += len(body)
        if self._size > self._limit:
            self._chunks.append(body[:room])
            self.over = True
            self._finish()
            self.close()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # an interim 1xx: the answer comes next
        self.done = True
        self.keep_alive = self._parser.should_keep_alive()
        self._finish()


def _until_close(headers: CIMultiDict[str]) -> bool:
    """A body with no length and no chunks ends when the connection does."""
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    return "Content-Length" not in headers and not chunked


class Wire:
    """POSTs to one URL over a pool of kept-alive connections (and the odd
    GET to another path of its host).

    At most `limit` connections stay open between requests; each request
    takes one (or opens one) for its whole exchange, and gives it back only
    when the answer was read to its end on a connection the server keeps.
    """

    def __init__(
        self,
        url: URL,
        *,
        ssl_context: ssl.SSLContext | None,
        limit: int,
        user_agent: str,
    ) -> None:
        assert url.host is not None
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl_context if url.scheme == "https" else None
        self._limit = limit
        host = url.raw_host or url.host
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        if not url.is_default_port():
            host = f"{host}:{url.port}"
        self._common = (
            f"Host: {host}\r\n"
            f"User-Agent: {user_agent}\r\n"
            "Accept: */*\r\n"
            "Accept-Encoding: gzip, deflate\r\n"
        )
        self._preamble = (
            f"POST {url.raw_path_qs} HTTP/1.1\r\n{self._common}"
            "Content-Type: application/json\r\n"
        )
        self._idle: list[_Connection] = []
        self._head_for: Mapping[str, str] | None = None
        self._head = b""

    def _request(self, headers: Mapping[str, str], body: bytes) -> bytes:
        if headers is not self._head_for:  # a new key: the head made again
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            self._head = (self._preamble + lines).encode("latin-1")
            self._head_for = headers
        return b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(body), body)

    async def post(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        ok_limit: int,
        error_limit: int,
    ) -> Reply:
        """POST `body` with `headers`; the answer, read within the limits
        (`ok_limit` for a 2xx body, `error_limit` for any other).

        Raises:
            TransportError: the connection failed, or the answer is unreadable
                (`reached_server` False when no connection was made).
            UntrustedServerError: the server's certificate is not trusted.
        """
        return await self._exchange(self._request(headers, body), ok_limit, error_limit)

    async def get(
        self, path_qs: str, headers: Mapping[str, str], *, limit: int
    ) -> Reply:
        """GET `path_qs` on the same host (a route read once, not the hot
        path); the answer read within `limit`, whatever its status.

        Raises:
            TransportError, UntrustedServerError: as `post`.
        """
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"GET {path_qs} HTTP/1.1\r\n{self._common}{lines}\r\n"
        return await self._exchange(head.encode("latin-1"), limit, limit)

    async def _exchange(self, request: bytes, ok_limit: int, error_limit: int) -> Reply:
        connection = await self._take()
        try:
            reply = await connection.exchange(request, ok_limit, error_limit)
        except (OSError, _Unusable) as exc:
            connection.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            connection.close()  # cancelled mid-exchange: its state is unknown
            raise
        if connection.reusable() and len(self._idle) < self._limit:
            self._idle.append(connection)
        else:
            connection.close()
        return reply

    async def _take(self) -> _Connection:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedServerError(
                "the server's TLS certificate is not trusted: "
                f"{exc.verify_message}; name its CA with --ca-bundle or "
                "SSL_CERT_FILE"
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"cannot connect to {self._host}:{self._port}: "
                f"{type(exc).__name__}: {exc}",
                reached_server=False,
            ) from exc
        return connection

    def close(self) -> None:
        """Close the connections kept open."""
        for connection in self._idle:
            connection.close()
        self._idle.clear()
