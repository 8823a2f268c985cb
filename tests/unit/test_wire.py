"""The plain call's HTTP/1.1 path, against a socket on 127.0.0.1 that answers
with the bytes each test writes."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from yarl import URL

from tests.helpers import SENTINEL_KEY
from worker.api.wire import MAX_HEAD_BYTES, Reply, Wire
from worker.errors import TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = {"Authorization": f"Bearer {SENTINEL_KEY}"}
BODY = b'{"choices": []}'


def answer(body: bytes = BODY, *, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,  # a GET
    )
    return head + await reader.readexactly(length)


class Server:
    """Counts connections and requests; answers as `reply` says."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            while True:
                request = await read_request(reader)
                self.requests.append(request)
                out = self.reply(request)
                if out is None:  # hang up without a word
                    break
                writer.write(out)
                await writer.drain()
                if b"Connection: close" in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Wire]:
    """`handler` listening on 127.0.0.1; a Wire posting to it."""
    listening = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    wire = Wire(
        URL(f"http://127.0.0.1:{port}/v1/chat/completions"),
        ssl_context=None,
        limit=4,
        user_agent="mira-batch/test",
    )
    try:
        yield wire
    finally:
        wire.close()
        listening.close()
        await listening.wait_closed()


async def post(wire: Wire, body: bytes = b"{}", *, ok_limit: int = 1000) -> Reply:
    return await asyncio.wait_for(
        wire.post(HEADERS, body, ok_limit=ok_limit, error_limit=100), 5
    )


async def test_answers_come_back_on_one_kept_alive_connection() -> None:
    server = Server(lambda _: answer(extra="x-request-id: r1\r\n"))
    async with serving(server.handle) as wire:
        for _ in range(3):
            reply = await wire.post(
                HEADERS, b'{"n": 1}', ok_limit=1000, error_limit=100
            )
            assert (reply.status, reply.body, reply.complete) == (200, BODY, True)
            assert reply.headers["X-Request-Id"] == "r1"
        assert server.connections == 1
        request = server.requests[0]
        assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert f"Authorization: Bearer {SENTINEL_KEY}".encode() in request
        assert request.endswith(b'\r\n\r\n{"n": 1}')


async def test_a_new_key_is_sent_from_the_next_request() -> None:
    server = Server(lambda _: answer())
    async with serving(server.handle) as wire:
        await post(wire)
        rotated = {"Authorization": "Bearer " + "sk-mira-" + "e" * 40}
        await wire.post(rotated, b"{}", ok_limit=1000, error_limit=100)
        assert b"e" * 40 in server.requests[1]
        assert b"e" * 40 not in server.requests[0]


async def test_a_get_to_another_path_shares_the_pool_and_reads_any_status_bounded() -> (
    None
):
    def reply(request: bytes) -> bytes:
        if request.startswith(b"GET /api/v1/auth/me/usage "):
            return answer(b"x" * 500, status="403 Forbidden")
        return answer()

    server = Server(reply)
    async with serving(server.handle) as wire:
        await post(wire)
        got = await asyncio.wait_for(
            wire.get("/api/v1/auth/me/usage", HEADERS, limit=100), 5
        )
        assert (got.status, got.body, got.complete) == (403, b"x" * 100, False)
        pricing = await asyncio.wait_for(wire.get("/pricing", {}, limit=1000), 5)
        assert (pricing.status, pricing.body, pricing.complete) == (200, BODY, True)
    usage = server.requests[1]
    assert usage.startswith(b"GET /api/v1/auth/me/usage HTTP/1.1\r\nHost: 127.0.0.1:")
    assert f"Authorization: Bearer {SENTINEL_KEY}".encode() in usage
    assert usage.endswith(b"\r\n\r\n")  # no body, no Content-Type
    assert b"Content-Type" not in usage
    assert b"Authorization" not in server.requests[2]
    assert server.connections == 2  # the refusal cut at its limit was not kept


async def test_a_chunked_and_gzipped_answer_is_read_whole() -> None:
    packed = gzip.compress(BODY)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (packed[:7], packed[7:])
    )
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Encoding: gzip\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    server = Server(lambda _: raw)
    async with serving(server.handle) as wire:
        reply = await post(wire)
        assert (reply.body, reply.complete) == (BODY, True)
        await post(wire)
        assert server.connections == 1


@pytest.mark.parametrize("framing", ["length", "chunked", "gzip bomb"])
async def test_an_answer_over_the_limit_is_cut_and_its_connection_dropped(
    framing: str,
) -> None:
    big = b"x" * 5000
    if framing == "length":
        raw = answer(big)
    elif framing == "chunked":
        raw = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"3e8\r\n%s\r\n" % big[:1000] for _ in range(5))
            + b"0\r\n\r\n"
        )
    else:
        raw = answer(
            gzip.compress(b"x" * 10_000_000), extra="Content-Encoding: gzip\r\n"
        )
    server = Server(lambda _: raw)
    async with serving(server.handle) as wire:
        reply = await post(wire)
        assert not reply.complete
        assert len(reply.body) <= 1000
        await post(wire, ok_limit=100_000)
        assert server.connections == 2  # the cut one was not used again


async def test_an_error_answer_keeps_its_status_headers_and_a_bounded_body() -> None:
    raw = answer(b"e" * 500, status="429 Too Many Requests", extra="Retry-After: 5\r\n")
    async with serving(Server(lambda _: raw).handle) as wire:
        reply = await post(wire)
        assert reply.status == 429
        assert reply.headers["retry-after"] == "5"
        assert reply.body == b"e" * 100
        assert not reply.complete


async def test_a_body_that_ends_with_the_connection_is_read_to_its_end() -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY
    server = Server(lambda _: raw)
    async with serving(server.handle) as wire:
        for _ in range(2):
            reply = await post(wire)
            assert (reply.status, reply.body, reply.complete) == (200, BODY, True)
        assert server.connections == 2  # the closed one is not used again


async def test_an_interim_100_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + answer()
    async with serving(Server(lambda _: raw).handle) as wire:
        reply = await post(wire)
        assert (reply.status, reply.body) == (200, BODY)


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"short",
        None,
    ],
    ids=["garbage", "huge head", "cut body", "hang-up"],
)
async def test_an_unreadable_answer_is_a_transport_error_that_reached_the_server(
    raw: bytes | None,
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if raw is not None:
            writer.write(raw)
            await writer.drain()
        writer.close()

    async with serving(cut) as wire:
        with pytest.raises(TransportError) as caught:
            await post(wire)
    assert caught.value.reached_server
    assert SENTINEL_KEY not in str(caught.value)


async def test_no_connection_is_a_transport_error_that_never_reached_it() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    wire = Wire(
        URL(f"http://127.0.0.1:{port}/v1/chat/completions"),
        ssl_context=None,
        limit=4,
        user_agent="t",
    )
    with pytest.raises(TransportError) as caught:
        await post(wire)
    assert not caught.value.reached_server


async def test_a_cancelled_request_does_not_leave_its_connection_for_the_next() -> None:
    answered = asyncio.Event()
    connections: list[int] = []

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await read_request(reader)
            await answered.wait()  # the first request is never answered
            writer.write(answer())
            await writer.drain()
            await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async with serving(slow) as wire:
        task = asyncio.create_task(post(wire))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answered.set()
        # The late answer is not read as the next request's: that one goes on
        # a connection of its own.
        assert (await post(wire, b'{"next": 1}')).status == 200
    assert connections == [1, 2]
