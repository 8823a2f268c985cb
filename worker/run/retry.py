"""The retry policy: tenacity, retrying only RetryableError, with jittered backoff.

A Retry-After is not waited here: it is put on the run's shared gate, which holds
back every worker (Mira's limits are per user, not per request). The backoff
here and the gate run from the same moment, so a retry waits the longer of the
two: a Retry-After of 0, in the past or negative never shortens the backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.errors import RetriesExhaustedError, RetryableError
from worker.flow.limiters import Sleep

T = TypeVar("T")

# Full jitter (AWS): N workers that failed together must not retry together.
BACKOFF_MULTIPLIER_S = 0.5
BACKOFF_MAX_S = 30.0


def build_retrying(
    max_attempts: int,
    *,
    sleep: Sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    multiplier_s: float = BACKOFF_MULTIPLIER_S,
    max_backoff_s: float = BACKOFF_MAX_S,
) -> AsyncRetrying:
    """A retrying controller; make one per worker (tenacity keeps per-call state)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(RetryableError),
        stop=stop_after_attempt(max_attempts),
        wait=wait_random_exponential(multiplier=multiplier_s, max=max_backoff_s),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=False,
    )


async def call_with_retries(
    retrying: AsyncRetrying, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run `attempt` under `retrying`.

    The first attempt runs outside tenacity: most jobs succeed at once, and the
    hot path should not pay for retry bookkeeping it does not use. A first
    failure is replayed into tenacity as its attempt 1, so the policy (attempt
    count, backoff, before_sleep) is exactly what it would have been.

    Raises:
        RetriesExhaustedError: every attempt failed with a RetryableError.
    """
    try:
        return await attempt()
    except RetryableError as exc:
        first: RetryableError | None = exc

    async def replay_then_attempt() -> T:
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        return await attempt()

    try:
        return await retrying(replay_then_attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        assert isinstance(last, RetryableError)
        raise RetriesExhaustedError(
            last, attempts=exc.last_attempt.attempt_number
        ) from last
