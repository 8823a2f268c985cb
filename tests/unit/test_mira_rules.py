"""Small rules from Mira's source: the daily cap's reset, an unclean last run,
a stream read into the plain shape, and which 200s are answers."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import SENTINEL_KEY, GivenSettings, chat_route
from worker.api.stream import Asked, StreamedAnswer
from worker.app.prepare import ended_uncleanly
from worker.app.validate import render_report, validate_file
from worker.domain.answer import check_answer, choices_of, message_of
from worker.domain.prices import PriceBook
from worker.domain.refusal import daily_cap_times, judge, stop_message
from worker.errors import (
    ContentFilteredError,
    EmptyAnswerError,
    RateLimitedError,
    UpstreamError,
)
from worker.files.outputs import RunFiles


def answer(content: object) -> dict[str, object]:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("Ошибка: upstream returned 502", UpstreamError),
        ("  Ошибка безопасности: blocked host", UpstreamError),
        ("I cannot provide that response.", ContentFilteredError),
        ("", EmptyAnswerError),
        ("   ", EmptyAnswerError),
        (None, EmptyAnswerError),
    ],
)
def test_a_200_that_is_no_answer_raises(
    content: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_answer(answer(content), 200, "req")


def test_a_real_answer_passes_even_when_it_mentions_an_error() -> None:
    check_answer(answer("The word for error is Ошибка."), 200, None)
    with pytest.raises(EmptyAnswerError):
        check_answer({"choices": []}, 200, None)


def test_a_stream_is_read_into_a_completion_with_mira_word_usage() -> None:
    request = {
        "model": "mira",
        "messages": [
            {"role": "system", "content": "not counted in a stream"},
            {"role": "user", "content": "two words"},
        ],
    }
    stream = StreamedAnswer(Asked.of(request), "req")
    for data in (
        b'{"id": "c1", "model": "mira", "choices": [{"delta": {"content": "Hello"}}]}',
        b'{"id": "c1", "choices": [{"delta": {"content": " there, friend"}}]}',
        b'{"id": "c1", "choices": [{"delta": {}, "finish_reason": "stop"}]}',
        b"[DONE]",
    ):
        stream.add(data)
    assert stream.done
    body = stream.body()
    assert choices_of(body)[0]["message"] == {
        "role": "assistant",
        "content": "Hello there, friend",
    }
    assert choices_of(body)[0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
    }


def test_a_queue_full_event_is_a_429_of_10_seconds() -> None:
    stream = StreamedAnswer(Asked(), None)
    with pytest.raises(RateLimitedError) as info:
        stream.add(b'{"error": {"message": "at capacity", "code": "queue_full"}}')
    assert info.value.retry_after_s == 10


def test_the_daily_cap_resets_at_the_next_utc_midnight() -> None:
    hit = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    assert daily_cap_times(hit)["resets_at"] == "2026-12-02T00:00:00+00:00"
    refusal = judge(
        3600, rate_limited=True, in_flight_at_send=1, proven=0, max_pause_s=300
    )
    message = stop_message(refusal, "Rate limit exceeded", now=hit)
    assert "in 2 h 30 min" in message
    assert "00:00 UTC" in message


def test_a_last_run_without_its_summary_did_not_end_cleanly(tmp_path: Path) -> None:
    files = RunFiles.default(str(tmp_path / "jobs.jsonl"), directory=tmp_path)
    assert not ended_uncleanly(files)  # a first run
    files.results.write_bytes(b"")
    assert ended_uncleanly(files)  # killed before its summary
    files.summary.write_text('{"slots_left_held": 0}')
    assert not ended_uncleanly(files)
    files.summary.write_text('{"slots_left_held": 2}')
    assert ended_uncleanly(files)
    files.summary.write_text('{"slots_left_held": 0}')
    os.utime(files.summary, (1, 1))  # older than the results: a later run died
    assert ended_uncleanly(files)


async def test_validate_counts_words_and_warns_of_system_messages(
    tmp_path: Path,
) -> None:
    source = tmp_path / "jobs.jsonl"
    source.write_text(
        '{"id": "a", "prompt": "one two three", "system": "be brief"}\n'
        '{"id": "b", "prompt": "four five"}\n'
    )
    report = await validate_file(str(source), GivenSettings())
    assert report.prompt_tokens["mira"] == 3 + 2 + 2
    assert report.with_system == 1
    text = render_report(
        str(source), report, PriceBook("override", {"mira": (1.0, 1.0)})
    )
    assert "1 jobs carry system messages" in text
    assert "whitespace-separated words" in text
    folded = await validate_file(str(source), GivenSettings(system_as_user=True))
    assert folded.with_system == 0


async def test_validate_counts_identical_requests_and_what_dedupe_saves(
    tmp_path: Path,
) -> None:
    source = tmp_path / "jobs.jsonl"
    lines = [f'{{"id": "j{i}", "prompt": "question {i % 4}"}}' for i in range(10)]
    source.write_text("\n".join(lines) + "\n")
    report = await validate_file(str(source), GivenSettings())
    assert report.identical == 6  # 10 jobs, 4 distinct requests
    text = render_report(
        str(source), report, PriceBook("override", {"mira": (1000.0, 1000.0)})
    )
    assert "identical requests: 6 repeat an earlier line's request" in text
    assert "--dedupe would save 6 messages and about" in text


async def test_a_last_done_without_a_newline_ends_the_stream() -> None:
    from aiohttp import web

    from worker.api.client import ChatClient

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\n')
        await response.write(b"data: [DONE]")
        await response.write_eof()
        return response

    async with (
        chat_route(chat) as base,
        ChatClient(base, SENTINEL_KEY, timeout_s=5, max_connections=1) as client,
    ):
        reply = await client.complete(b'{"messages": []}', stream=True)
    assert reply.streamed
    assert message_of(choices_of(reply.body)[0])["content"] == "ok"
