"""ChatClient with aioresponses: one attempt per call, no redirects.

aioresponses stands in for aiohttp, so these clients take aiohttp's path
(`wire=False`), which streams and proxied routes take; the plain call's own
path is tested against a socket in test_wire.py, and the run's against the
simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from tests.fakes import mock_http
from tests.helpers import SENTINEL_KEY, assert_no_key, chat_route
from worker.api.client import ChatClient
from worker.errors import (
    AuthError,
    BadResponseError,
    PaymentRequiredError,
    RateLimitedError,
    RequestRejectedError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
)

BASE = "https://api.example.test/v1"
URL = f"{BASE}/chat/completions"
OK_BODY = {
    "id": "c1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4},
}


@pytest.fixture
async def client() -> AsyncIterator[ChatClient]:
    async with ChatClient(
        BASE, SENTINEL_KEY, timeout_s=5, max_connections=4, wire=False
    ) as c:
        yield c


def calls(mocked: aioresponses) -> int:
    return sum(len(v) for v in mocked.requests.values())


async def test_success_returns_body_request_id_and_usage(client: ChatClient) -> None:
    with mock_http() as mocked:
        mocked.post(URL, payload=OK_BODY, headers={"x-request-id": "req-9"})
        reply = await client.complete(b'{"model": "mira"}')
        assert calls(mocked) == 1
        (request,) = next(iter(mocked.requests.values()))
    assert reply.status == 200
    assert reply.body == OK_BODY
    assert reply.request_id == "req-9"
    assert request.kwargs["data"] == b'{"model": "mira"}'
    assert request.kwargs["allow_redirects"] is False


async def test_bearer_header_is_sent() -> None:
    captured: list[str] = []

    async def chat(request: web.Request) -> web.Response:
        captured.append(request.headers.get("Authorization", ""))
        return web.json_response(OK_BODY)

    async with (
        chat_route(chat) as base,
        ChatClient(base, SENTINEL_KEY, timeout_s=5, max_connections=1) as client,
    ):
        await client.complete(b"{}")
    assert captured == [f"Bearer {SENTINEL_KEY}"]


@pytest.mark.parametrize(
    ("status", "kwargs", "expected"),
    [
        (401, {"payload": {"detail": "Invalid API key"}}, AuthError),
        (402, {"payload": {"detail": "Insufficient balance"}}, PaymentRequiredError),
        (
            429,
            {"payload": {"detail": "slow"}, "headers": {"Retry-After": "5"}},
            RateLimitedError,
        ),
        (500, {"payload": {"detail": "boom"}}, ServerError),
        (502, {"body": "<html>Bad Gateway</html>"}, ServerError),
        (400, {"payload": {"error": {"message": "bad model"}}}, RequestRejectedError),
        (302, {"headers": {"Location": "https://evil.example/"}}, RequestRejectedError),
    ],
)
async def test_each_status_raises_its_error_after_exactly_one_call(
    client: ChatClient,
    status: int,
    kwargs: dict[str, object],
    expected: type[Exception],
) -> None:
    with mock_http() as mocked:
        mocked.post(URL, status=status, **kwargs)
        with pytest.raises(expected) as info:
            await client.complete(b"{}")
        assert calls(mocked) == 1
    assert_no_key(str(info.value))


async def test_429_error_carries_retry_after(client: ChatClient) -> None:
    with mock_http() as mocked:
        mocked.post(
            URL, status=429, payload={"detail": "x"}, headers={"Retry-After": "12"}
        )
        with pytest.raises(RateLimitedError) as info:
            await client.complete(b"{}")
    assert info.value.retry_after_s == 12


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"trunc'])
async def test_2xx_without_a_json_object_is_retryable(
    client: ChatClient, body: str
) -> None:
    with mock_http() as mocked:
        mocked.post(URL, status=200, body=body)
        with pytest.raises(BadResponseError):
            await client.complete(b"{}")


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectionError("reset"),
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
    ],
)
async def test_transport_failures_are_retryable(
    client: ChatClient, exc: Exception
) -> None:
    with mock_http() as mocked:
        mocked.post(URL, exception=exc)
        with pytest.raises(TransportError):
            await client.complete(b"{}")


async def test_repr_holds_no_key(client: ChatClient) -> None:
    assert_no_key(repr(client))


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([b"data: " + b"x" * 300_000 + b"\n\n"], ResponseTooLargeError),
        ([b'data: {"choices": [{"delta": {"content": "cut"}}]}\n\n'], TransportError),
        (
            [b'data: {"error": {"code": "queue_full", "message": "full"}}\n\n'],
            RateLimitedError,
        ),
    ],
)
async def test_a_stream_that_is_too_big_cut_or_refused_is_no_answer(
    events: list[bytes], error: type[Exception]
) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    async with (
        chat_route(chat) as base,
        ChatClient(
            base,
            SENTINEL_KEY,
            timeout_s=5,
            max_connections=1,
            max_response_bytes=100_000,
        ) as client,
    ):
        with pytest.raises(error):
            await client.complete(b'{"messages": []}', stream=True)


async def test_a_stream_answered_in_one_piece_keeps_the_plain_calls_limit() -> None:
    # A server that ignores `stream` and answers in one body: read as a plain
    # call's answer, so one past --max-response-bytes is too large, not a
    # cut (and retried) JSON body.
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"choices": [{"message": {"content": "x" * 200}}]})

    async with (
        chat_route(chat) as base,
        ChatClient(
            base, SENTINEL_KEY, timeout_s=5, max_connections=1, max_response_bytes=100
        ) as client,
    ):
        with pytest.raises(ResponseTooLargeError):
            await client.complete(b'{"messages": []}', stream=True)
