"""The retry policy on recorded sleeps: what is retried, how long, when it gives up."""

from __future__ import annotations

import pytest

from worker.domain.refusal import judge
from worker.errors import (
    AuthError,
    QuotaError,
    RateLimitedError,
    RequestRejectedError,
    RetriesExhaustedError,
    RetryableError,
    ServerError,
    TransportError,
)
from worker.exits import StopReason
from worker.run.retry import MAX_FREE_RETRIES, Retry, RetryPolicy, backoff_s


class Script:
    """Raises the scripted errors in order, then returns "ok"; a transient one
    comes as the sender sends it, with a refusal when one is scripted."""

    def __init__(self, *errors: Exception | Retry) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, attempt: int) -> str:
        self.calls += 1
        if self.errors:
            error = self.errors.pop(0)
            raise Retry(error, None) if isinstance(error, RetryableError) else error
        return "ok"


async def run(script: Script, max_attempts: int = 6) -> tuple[str, list[float]]:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_attempts, sleep=record)
    return await policy.call(script), waits


async def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    script = Script(ServerError("boom", status=500), TransportError("reset"))
    result, waits = await run(script)
    assert result == "ok"
    assert script.calls == 3
    assert len(waits) == 2
    assert all(0 <= w <= 30 for w in waits)


@pytest.mark.parametrize(
    "error",
    [
        RateLimitedError("slow", retry_after_s=0, status=429),
        ServerError("later", retry_after_s=0, status=503),
        ServerError("later", retry_after_s=None, status=503),
    ],
)
async def test_a_retry_after_of_zero_never_shortens_the_backoff(
    error: Exception,
) -> None:
    samples = []
    for _ in range(50):
        result, waits = await run(Script(error, error))
        assert result == "ok"
        samples += waits
    # Full jitter: uniform up to 0.5 * 2**attempt; never all zero.
    assert max(samples) > 0.2
    assert all(0 <= w <= 2 for w in samples)


async def test_gives_up_after_max_attempts_with_the_last_error_as_cause() -> None:
    script = Script(*[ServerError("boom", status=503)] * 10)
    with pytest.raises(RetriesExhaustedError) as info:
        await run(script, max_attempts=4)
    assert script.calls == 4
    assert info.value.attempts == 4
    assert info.value.status == 503
    assert isinstance(info.value.__cause__, ServerError)


@pytest.mark.parametrize(
    "error", [AuthError("no", status=401), RequestRejectedError("bad", status=400)]
)
async def test_fatal_and_job_errors_are_never_retried(error: Exception) -> None:
    script = Script(error)
    with pytest.raises(type(error)):
        await run(script)
    assert script.calls == 1


def test_backoff_grows_exponentially_and_is_capped() -> None:
    samples = [
        max(backoff_s(20, multiplier_s=0.5, max_s=30) for _ in range(200)),
        max(backoff_s(1, multiplier_s=0.5, max_s=30) for _ in range(200)),
    ]
    assert samples[0] <= 30
    assert samples[1] <= 1.0


def held(streak: int = 0) -> Retry:
    """Mira's in-flight refusal with one of ours in flight: slots held elsewhere."""
    error = RateLimitedError("slow", retry_after_s=5, status=429)
    refusal = judge(
        5,
        rate_limited=True,
        in_flight_at_send=1,
        proven=3,
        max_pause_s=300,
        held_streak=streak,
    )
    return Retry(error, refusal)


async def test_a_refusal_held_elsewhere_uses_no_attempt_a_bounded_number_of_times() -> (
    None
):
    script = Script(*[held(n) for n in range(5)])
    result, _ = await run(script, max_attempts=2)
    assert result == "ok"  # five refusals, two attempts: none of them counted
    endless = Script(*[held() for _ in range(MAX_FREE_RETRIES + 5)])
    with pytest.raises(RetriesExhaustedError):
        await run(endless, max_attempts=2)
    assert endless.calls == MAX_FREE_RETRIES + 2


@pytest.mark.parametrize(
    ("retry_after_s", "reason"),
    [
        (3600, StopReason.DAILY_CAP),
        (86400, StopReason.MONTHLY_BUDGET),
        (301, StopReason.RATE_LIMIT_BUDGET),
    ],
)
async def test_a_refusal_that_stops_the_run_ends_the_job_unwritten(
    retry_after_s: float, reason: StopReason
) -> None:
    error = RateLimitedError("later", retry_after_s=retry_after_s, status=429)
    refusal = judge(
        retry_after_s,
        rate_limited=True,
        in_flight_at_send=1,
        proven=0,
        max_pause_s=300,
    )
    assert refusal.stop is reason
    assert refusal.pause_s == 0  # a stop, not a pause
    script = Script(Retry(error, refusal))
    with pytest.raises(QuotaError) as info:
        await run(script)
    assert info.value.stop_reason is reason
    assert script.calls == 1
