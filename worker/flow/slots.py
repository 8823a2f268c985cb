"""The in-flight limiter: at most `limit` requests at the server at once.

Waiters queue in order and one waker hands freed slots on, as aiolimiter does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple


class Grant(NamedTuple):
    """A slot taken: the congestion epoch to report a 429 against, and how
    many of the run's requests were in flight with it, itself included, at the
    moment it was granted (what the server held, as far as the run knows)."""

    epoch: int
    position: int


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
        self._waiters: deque[asyncio.Future[int]] = deque()
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

    async def acquire(self) -> Grant:
        """Wait for a slot.

        Several waiters woken at once (a raised limit) each get the position
        they were granted at, not the count once they run: the first 429 of a
        burst is then learned at what was really in flight.
        """
        if self._in_flight < self._limit and not self._waiters:
            self._in_flight += 1
            return Grant(self._epoch, self._in_flight)
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            position = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was granted as we were cancelled: hand it on.
                self.release()
            elif waiter in self._waiters:  # _wake may have dropped it already
                self._waiters.remove(waiter)
            raise
        return Grant(self._epoch, position)

    def release(self) -> None:
        """Give a slot back."""
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(self._in_flight)
