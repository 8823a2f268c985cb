"""The Retry-After gate: one `not before` time that every request waits for."""

from __future__ import annotations

import math

from worker.flow.clock import Clock, Sleep


class RetryAfterGate:
    """One `not before` time shared by every worker: a Retry-After pauses all.

    `await gate.wait()` returns once the gate is open; it holds nothing.
    """

    __slots__ = ("_clock", "_not_before", "_sleep")

    def __init__(self, *, clock: Clock, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._not_before = -math.inf

    def defer(self, delay_s: float) -> None:
        """Hold every request back for delay_s from now (the longest wait wins)."""
        self._not_before = max(self._not_before, self._clock() + delay_s)

    def remaining_s(self) -> float:
        """Seconds until requests may be sent again (0 when open)."""
        return max(0.0, self._not_before - self._clock())

    def is_open(self) -> bool:
        """True when requests may be sent now."""
        return self._not_before <= self._clock()

    async def wait(self) -> None:
        """Sleep until the gate is open."""
        while (remaining := self._not_before - self._clock()) > 0:
            await self._sleep(remaining)
