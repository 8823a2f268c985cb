"""Flow control parts: the concurrency limiter, pacers, a sliding window, the gate.

Every piece takes an injected clock and sleep, so tests run them on fake time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class AdaptiveLimiter:
    """Caps requests in flight at a limit that can move (see learn.py for how).

    Each slot carries the congestion epoch it was taken in: requests already in
    flight when the limit was cut carry an older epoch, so their 429s belong to
    the same congestion event and do not cut it again.
    """

    __slots__ = ("_epoch", "_in_flight", "_limit", "_waiters", "ceiling", "decreases")

    def __init__(self, ceiling: int, *, initial: int) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self._limit = min(ceiling, max(1, initial))
        self._in_flight = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.decreases = 0

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self._in_flight

    @property
    def epoch(self) -> int:
        """The current congestion epoch."""
        return self._epoch

    def raise_to(self, limit: int) -> None:
        """Allow more in flight (never above the ceiling), waking waiters."""
        self._limit = max(self._limit, min(self.ceiling, limit))
        self._wake()

    def cut_to(self, limit: int, *, new_event: bool = True) -> None:
        """Allow fewer in flight from now on; a new event starts a new epoch."""
        self._limit = max(1, min(self._limit, limit))
        if new_event:
            self._epoch += 1
            self.decreases += 1

    async def acquire(self) -> int:
        """Wait for a slot; return the congestion epoch to report a 429 against."""
        if self._in_flight < self._limit and not self._waiters:
            self._in_flight += 1
            return self._epoch
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was granted as we were cancelled: hand it on.
                self.release()
            elif waiter in self._waiters:  # _wake may have dropped it already
                self._waiters.remove(waiter)
            raise
        return self._epoch

    def release(self) -> None:
        """Give a slot back."""
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)


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


class RetryAfterGate:
    """One `not before` time shared by every worker: a 429's Retry-After pauses all."""

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


# The default clock: time.monotonic itself, with no wrapper on the hot path.
monotonic: Clock = time.monotonic
