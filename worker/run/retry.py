"""The retry policy, whole: what is retried, how long to wait, when to give up.

- Only a RetryableError is retried; a JobError or FatalError ends the job or run.
  An attempt that failed transiently raises `Retry`, which carries the error and
  the throttle's decision about it (a `Refusal`, when the answer said how long
  to wait), as arq's `Retry(defer=...)` carries its delay.
- The wait is this worker's own jittered exponential backoff. The server's
  Retry-After is not waited for here: the throttle put it on the run's shared
  gate, which every request waits for, because Mira's limits are per user.
- A refusal that stops the run (the daily cap, the monthly budget, a Retry-After
  longer than --max-retry-after) ends the job unwritten and the run resumably.
- A refusal that was no fault of the job's (slots held elsewhere) uses up no
  attempt, a bounded number of times; the daily cap met with --until-done
  uses up nothing: the job is asked again after the day's reset.
- After `max_attempts` attempts the job fails with the last error as cause.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from worker.domain.refusal import Refusal, stop_message
from worker.errors import QuotaError, RetriesExhaustedError, RetryableError
from worker.flow.clock import Sleep

T = TypeVar("T")

# Full jitter (AWS): N workers that failed together must not retry together.
BACKOFF_MULTIPLIER_S = 0.5
BACKOFF_MAX_S = 30.0
# Retries that use up no attempt (the account's slots held elsewhere), per job.
MAX_FREE_RETRIES = 12


class Retry(Exception):
    """An attempt failed transiently: its error, and the throttle's decision
    about the Retry-After it carried (None when it carried none)."""

    def __init__(self, error: RetryableError, refusal: Refusal | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.refusal = refusal


def backoff_s(
    attempt: int,
    *,
    multiplier_s: float = BACKOFF_MULTIPLIER_S,
    max_s: float = BACKOFF_MAX_S,
) -> float:
    """The wait after failed attempt number `attempt` (1 is the first)."""
    return random.uniform(0, min(max_s, multiplier_s * 2 ** (attempt - 1)))


class RetryPolicy:
    """Runs an attempt until it succeeds, fails for good, or stops the run."""

    __slots__ = ("_max_retry_after_s", "_sleep", "max_attempts")

    def __init__(
        self,
        max_attempts: int,
        *,
        sleep: Sleep,
        max_retry_after_s: float = float("inf"),
    ) -> None:
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._max_retry_after_s = max_retry_after_s

    async def call(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        on_retry: Callable[[RetryableError, int], None] | None = None,
    ) -> T:
        """`await attempt(n)` for n = 1, 2, ... until one returns.

        Raises:
            RetriesExhaustedError: every attempt failed with a RetryableError.
            QuotaError: a refusal that stops the run.
        """
        number, free = 1, 0
        while True:
            try:
                return await attempt(number)
            except Retry as retry:
                exc, refusal = retry.error, retry.refusal
                if refusal is not None and refusal.stop is not None:
                    message = stop_message(
                        refusal, exc.message, max_pause_s=self._max_retry_after_s
                    )
                    raise QuotaError(
                        message, stop_reason=refusal.stop, status=exc.status
                    ) from exc
                if refusal is not None and refusal.waits_for_day:
                    continue  # the day's wait holds it back; nothing is used up
                free_retry = refusal is not None and not refusal.uses_attempt
                if free_retry and free < MAX_FREE_RETRIES:
                    free += 1  # the gate holds it back; no attempt is used up
                    number -= 1
                if number >= self.max_attempts:
                    raise RetriesExhaustedError(exc, attempts=number) from exc
                if on_retry is not None:
                    on_retry(exc, number)
                await self._sleep(backoff_s(max(1, number)))
            number += 1
