"""Stop reasons and their precedence, the controller, and the reader's cancellation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.fakes import FakeClock
from worker.errors import (
    QuotaError,
    RateLimitedError,
    RetryableError,
    ServerError,
)
from worker.exits import StopReason
from worker.files.jobs import Rules, parse_job
from worker.files.records import Recorder
from worker.files.resume import ResumeState
from worker.files.sources import JobLines
from worker.files.writer import ResultWriter
from worker.flow.throttle import FlowLimits, Throttle
from worker.report.tally import Tally
from worker.run.crew import Crew
from worker.run.queue import JobQueue
from worker.run.reader import Intake, feed
from worker.run.retry import Retry, RetryPolicy
from worker.run.stop import StopController

MOST_TO_LEAST_SERIOUS = [
    StopReason.OUTPUT_FAILED,
    StopReason.AUTH_FAILED,
    StopReason.PAYMENT_REQUIRED,
    StopReason.SYSTEMATIC_FAILURE,
    StopReason.DEADLINE,
    StopReason.SIGTERM,
]


def controller() -> StopController:
    return StopController()


@pytest.mark.parametrize("first", MOST_TO_LEAST_SERIOUS)
@pytest.mark.parametrize("second", MOST_TO_LEAST_SERIOUS)
async def test_the_more_serious_reason_wins_in_either_order(
    first: StopReason, second: StopReason
) -> None:
    stop = controller()
    stop.request(first, "first")
    stop.request(second, "second")
    expected = min(first, second, key=MOST_TO_LEAST_SERIOUS.index)
    assert stop.reason is expected
    assert stop.message == ("first" if expected is first else "second")


async def test_equally_serious_reasons_keep_the_first() -> None:
    stop = controller()
    stop.request(StopReason.DEADLINE, "deadline")
    stop.request(StopReason.TOKEN_BUDGET, "tokens")
    assert stop.reason is StopReason.DEADLINE


@pytest.mark.parametrize("reason", list(StopReason))
async def test_only_an_output_failure_cancels_at_once_and_401_402_hurry(
    reason: StopReason,
) -> None:
    stop = controller()
    stop.request(reason, "why")
    assert stop.stopping.is_set()
    fatal = reason in {
        StopReason.OUTPUT_FAILED,
        StopReason.AUTH_FAILED,
        StopReason.PAYMENT_REQUIRED,
    }
    assert stop.hurried.is_set() is fatal  # answers paid for get a short grace
    assert stop.cancelling.is_set() is (reason is StopReason.OUTPUT_FAILED)


def test_each_reason_has_its_exit_code_and_a_next_step() -> None:
    codes = {reason: reason.exit_code for reason in StopReason}
    assert codes == {
        StopReason.OUTPUT_FAILED: 7,
        StopReason.AUTH_FAILED: 3,
        StopReason.PAYMENT_REQUIRED: 4,
        StopReason.SYSTEMATIC_FAILURE: 6,
        StopReason.RATE_LIMIT_BUDGET: 5,
        StopReason.MONTHLY_BUDGET: 5,
        StopReason.COST_BUDGET: 5,
        StopReason.DAILY_CAP: 5,
        StopReason.DEADLINE: 5,
        StopReason.TOKEN_BUDGET: 5,
        StopReason.SIGINT: 130,
        StopReason.SIGTERM: 143,
        StopReason.SIGHUP: 129,
        StopReason.DAILY_RESERVE: 5,
    }
    assert all(reason.next_step for reason in StopReason)


async def test_a_drain_cuts_a_backoff_short_and_lets_a_request_finish() -> None:
    crew = Crew()
    answer = asyncio.get_running_loop().create_future()
    finished: list[str] = []

    async def backing_off() -> None:
        await asyncio.sleep(600)  # a retry's backoff: never waited out
        finished.append("backoff")

    async def sending() -> None:
        task = asyncio.current_task()
        assert task is not None
        crew.began(task)
        try:
            await answer
        finally:
            crew.ended(task)
        finished.append("answer written")
        await asyncio.sleep(600)  # its next wait: cancelled there

    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as group:
            crew.start(group, backing_off())
            crew.start(group, sending())
            await asyncio.sleep(0)
            crew.drain()
            assert crew.sending_count() == 1
            answer.set_result(None)
    assert finished == ["answer written"]


async def test_a_cancelled_reader_still_posts_every_end_marker(
    tmp_path: Path,
) -> None:
    read_end, write_end = os.pipe()
    try:
        tally = Tally()
        stats = tally.stats
        queue = JobQueue(4)
        with os.fdopen(read_end, "rb", closefd=False) as source:
            intake = Intake(
                source=JobLines(source, Rules()),
                shard=None,
                resume=ResumeState(),
                tally=tally,
                recorder=Recorder(
                    ResultWriter(tmp_path / "r.jsonl", tmp_path / "e.jsonl")
                ),
            )
            reading = asyncio.create_task(feed(intake, queue, workers=4))
            os.write(write_end, b'{"id": "a", "prompt": "x"}\n')
            first = await asyncio.wait_for(queue.get(), 5)
            assert first is not None
            assert first.id == "a"
            reading.cancel()  # the pipe is idle: the reader waits on it
            with pytest.raises(asyncio.CancelledError):
                await reading
            ends = [await asyncio.wait_for(queue.get(), 5) for _ in range(4)]
        assert ends == [None] * 4
        assert stats.input_complete is False
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_a_worker_waiting_out_a_retry_after_holds_no_slot() -> None:
    clock = FakeClock()
    throttle = Throttle(FlowLimits(concurrency=1), clock=clock, sleep=clock.sleep)
    throttle.gate.defer(30)
    job = parse_job(b'{"prompt": "x"}', 1)
    waiting = asyncio.create_task(throttle.turn(job).__aenter__())
    await asyncio.sleep(0)
    assert throttle.limiter.in_flight == 0  # the gate holds it, not a slot
    turn = await asyncio.wait_for(waiting, 5)
    assert throttle.limiter.in_flight == 1
    await turn.__aexit__(None, None, None)
    assert throttle.limiter.in_flight == 0


@pytest.mark.parametrize(
    ("error", "paused_s"),
    [
        (ServerError("later", status=503, retry_after_s=7), 7),
        (ServerError("later", status=503, retry_after_s=0), 0),
        (ServerError("later", status=503), 0),
        (RateLimitedError("slow", status=429, retry_after_s=5), 5),
        (RateLimitedError("slow", status=429, retry_after_s=0), 0),
    ],
)
async def test_every_retryable_status_with_a_retry_after_pauses_the_run(
    error: RetryableError, paused_s: float
) -> None:
    clock = FakeClock()
    throttle = Throttle(FlowLimits(concurrency=4), clock=clock, sleep=clock.sleep)
    job = parse_job(b'{"prompt": "x"}', 1)
    turn = await throttle.turn(job).__aenter__()
    await turn.__aexit__(type(error), error, None)  # judged once, on the way out
    assert throttle.gate.remaining_s() == paused_s


async def test_a_503_asking_for_longer_than_max_retry_after_stops_resumably() -> None:
    clock = FakeClock()
    limits = FlowLimits(concurrency=4, max_pause_s=300)
    throttle = Throttle(limits, clock=clock, sleep=clock.sleep)
    policy = RetryPolicy(4, sleep=clock.sleep, max_retry_after_s=300)
    job = parse_job(b'{"prompt": "x"}', 1)
    error = ServerError("maintenance", status=503, retry_after_s=3600)
    turn = await throttle.turn(job).__aenter__()
    await turn.__aexit__(type(error), error, None)
    with pytest.raises(QuotaError) as info:
        await policy.call(_failing(Retry(error, turn.refusal)))
    assert info.value.stop_reason is StopReason.RATE_LIMIT_BUDGET
    assert throttle.gate.remaining_s() == 0


async def test_rpm_with_tpm_keep_the_rpm_bound_in_every_window() -> None:
    clock = FakeClock()
    limits = FlowLimits(concurrency=4, rpm=120, tpm=3000)
    throttle = Throttle(limits, clock=clock, sleep=clock.sleep)
    tally = Tally()
    job = parse_job(b'{"prompt": "a short one"}', 1)
    starts = []
    for n in range(60):
        turn = await throttle.turn(job).__aenter__()
        starts.append(clock())
        # Usage above or below the estimate moves the --tpm schedule.
        tokens = 80 if n % 3 else 10
        turn.succeeded(0.1, tally.used({"total_tokens": tokens}).tokens)
        await turn.__aexit__(None, None, None)
    for window_s in (1.0, 2.0, 5.0, 10.0):
        most = max(
            sum(1 for t in starts if start <= t < start + window_s) for start in starts
        )
        assert most <= 120 * window_s / 60 + 1, window_s


def _failing(error: Exception) -> Callable[[int], Awaitable[str]]:
    async def attempt(number: int) -> str:
        raise error

    return attempt
