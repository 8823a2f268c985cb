"""The retry policy, whole: what is retried, how long to wait, when to give up.

- Only a RetryableError is retried; a JobError or FatalError ends the job or run.
- The wait is the longer of two, both from the moment the attempt failed: a
  jittered exponential backoff (this worker's own), and the server's
  Retry-After, which goes on the run's shared gate, because Mira's limits are
  per user: every worker holds back, not only the one that was told.
- A Retry-After longer than --max-retry-after is no pause but a spent quota:
  the run stops, resumably (QuotaError), as it does at Mira's daily cap and
  monthly budget.
- After `max_attempts` attempts the job fails with the last error as cause.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from worker.errors import (
    QuotaError,
    RetriesExhaustedError,
    RetryableError,
)
from worker.exits import StopReason
from worker.flow.caps import DAILY_CAP_RETRY_AFTER_S, MONTHLY_BUDGET_RETRY_AFTER_S
from worker.flow.clock import Sleep
from worker.flow.gate import RetryAfterGate

T = TypeVar("T")

# Full jitter (AWS): N workers that failed together must not retry together.
BACKOFF_MULTIPLIER_S = 0.5
BACKOFF_MAX_S = 30.0
# Retries that use up no attempt (the account's slots held elsewhere), per job.
MAX_FREE_RETRIES = 12


def backoff_s(
    attempt: int,
    *,
    multiplier_s: float = BACKOFF_MULTIPLIER_S,
    max_s: float = BACKOFF_MAX_S,
) -> float:
    """The wait after failed attempt number `attempt` (1 is the first)."""
    return random.uniform(0, min(max_s, multiplier_s * 2 ** (attempt - 1)))


def _next_midnight(moment: datetime) -> datetime:
    """The next 00:00 UTC, when Mira's daily cap resets."""
    return (moment + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def daily_cap_times(hit_at: datetime) -> dict[str, str]:
    """When the daily cap was hit, and when it resets."""
    return {
        "hit_at": hit_at.isoformat(),
        "resets_at": _next_midnight(hit_at).isoformat(),
    }


def daily_cap_message(now: datetime | None = None) -> str:
    """What to say at the daily cap: when it resets (00:00 UTC), and how soon."""
    now = now or datetime.now(UTC)
    left_s = (_next_midnight(now) - now).total_seconds()
    hours, seconds = divmod(int(left_s), 3600)
    return (
        "Mira's daily message cap is reached (429, Retry-After: 3600); it resets "
        f"at 00:00 UTC, in {hours} h {seconds // 60} min"
    )


class RetryPolicy:
    """Runs an attempt until it succeeds, fails for good, or stops the run."""

    __slots__ = ("_gate", "_max_retry_after_s", "_sleep", "max_attempts")

    def __init__(
        self,
        max_attempts: int,
        *,
        sleep: Sleep,
        gate: RetryAfterGate | None = None,
        max_retry_after_s: float = float("inf"),
    ) -> None:
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._gate = gate
        self._max_retry_after_s = max_retry_after_s

    def pause_for(self, exc: RetryableError) -> None:
        """Hold every worker back for the server's Retry-After, or stop the run.

        Raises:
            QuotaError: the daily cap, the monthly budget, or longer than
                --max-retry-after.
        """
        retry_after_s = exc.retry_after_s
        if retry_after_s is None or retry_after_s <= 0:
            return
        if retry_after_s == DAILY_CAP_RETRY_AFTER_S and exc.status == 429:
            raise QuotaError(
                daily_cap_message(), stop_reason=StopReason.DAILY_CAP, status=429
            ) from exc
        if retry_after_s == MONTHLY_BUDGET_RETRY_AFTER_S and exc.status == 429:
            raise QuotaError(
                f"Mira's monthly token budget is spent: {exc.message}",
                stop_reason=StopReason.MONTHLY_BUDGET,
                status=429,
            ) from exc
        if retry_after_s > self._max_retry_after_s:
            raise QuotaError(
                f"the API asked to wait {retry_after_s:g} s (over "
                f"--max-retry-after {self._max_retry_after_s:g} s): {exc.message}",
                stop_reason=StopReason.RATE_LIMIT_BUDGET,
            ) from exc
        if self._gate is not None:
            self._gate.defer(retry_after_s)

    async def call(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        on_retry: Callable[[RetryableError, int], None] | None = None,
    ) -> T:
        """`await attempt(n)` for n = 1, 2, ... until one returns.

        Raises:
            RetriesExhaustedError: every attempt failed with a RetryableError.
            QuotaError: a Retry-After that stops the run.
        """
        number, free = 1, 0
        while True:
            try:
                return await attempt(number)
            except RetryableError as exc:
                self.pause_for(exc)
                if not exc.counts_as_attempt and free < MAX_FREE_RETRIES:
                    free += 1  # the gate holds it back; no attempt is used up
                    number -= 1
                elif number >= self.max_attempts:
                    raise RetriesExhaustedError(exc, attempts=number) from exc
                if on_retry is not None:
                    on_retry(exc, number)
                await self._sleep(backoff_s(max(1, number)))
            number += 1
