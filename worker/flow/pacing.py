"""Rate limiters: even pacing (--rpm, --tpm) and a sliding window of starts.

Each is used in steps: `wait_ready` (taking nothing), then `take` at the moment
of starting, which is how the throttle keeps a worker that waits from holding
anything.
"""

from __future__ import annotations

import math
from collections import deque

from worker.flow.clock import Clock, Sleep


class WindowLimiter:
    """At most `requests` starts in any `window_s` seconds: the client-side twin of
    a server's sliding window, so a learned window draws no more 429s."""

    __slots__ = ("_clock", "_sleep", "_starts", "requests", "window_s")

    def __init__(
        self, requests: int, window_s: float, *, clock: Clock, sleep: Sleep
    ) -> None:
        self.requests = requests
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()

    def _wait_s(self) -> float:
        now, starts = self._clock(), self._starts
        while starts and starts[0] <= now - self.window_s:
            starts.popleft()
        if len(starts) < self.requests:
            return 0.0
        return starts[len(starts) - self.requests] + self.window_s - now

    def is_ready(self) -> bool:
        """True when a request may start now."""
        return self._wait_s() <= 0

    async def wait_ready(self) -> None:
        """Sleep until a request may start; takes no slot."""
        while (wait_s := self._wait_s()) > 0:
            await self._sleep(wait_s)

    def take(self, cost: float = 1.0) -> None:
        """Start a request now."""
        self._starts.append(self._clock())

    def take_at(self, started: float) -> None:
        """Count a request started earlier (the history a window is learned from)."""
        self._starts.append(started)


class Pacer:
    """Starts requests evenly spaced so that `rate_per_s` cost units pass per second.

    A request may start once the schedule reaches `next`; starting moves `next`
    on by `cost / rate` (GCRA with no burst), so in any window of W seconds at
    most rate*W + 1 requests start. The slot is taken at the moment of starting
    (`take`), not reserved while waiting (`wait_ready`): a worker that waits
    holds nothing, and a cost corrected by `adjust` (the usage a response
    reported) delays every request that has not started yet.
    """

    __slots__ = ("_clock", "_next", "_rate", "_sleep")

    def __init__(self, rate_per_s: float, *, clock: Clock, sleep: Sleep) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf

    def is_ready(self) -> bool:
        """True when a request may start now."""
        return self._next <= self._clock()

    async def wait_ready(self) -> None:
        """Sleep until a request may start; takes no slot."""
        while (wait_s := self._next - self._clock()) > 0:
            await self._sleep(wait_s)

    def take(self, cost: float = 1.0) -> None:
        """Start a request of `cost` now: move the schedule on."""
        self._next = max(self._clock(), self._next) + cost / self._rate

    def adjust(self, extra_cost: float) -> None:
        """Charge (or refund, when negative) cost found out after the start."""
        self._next += extra_cost / self._rate
