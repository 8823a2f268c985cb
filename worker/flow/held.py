"""Mira's in-flight cap full while fewer than its 3 of ours are in flight: the
other slots are held elsewhere (an earlier run stopped hard, an answer cut at the
server's timeout, the web chat), and Mira frees leaked ones 5 minutes after they
were last taken. Such a refusal teaches no cap; each one costs a daily message,
so one request at a time asks, after longer and longer pauses."""

from __future__ import annotations

import logging

from worker.flow import caps
from worker.flow.slots import AdaptiveLimiter

log = logging.getLogger("worker.run")


class HeldElsewhere:
    """An episode of refusals with the account's slots held elsewhere."""

    __slots__ = ("_limit_before", "_limiter", "_said", "_streak")

    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self._limiter = limiter
        self._streak = 0  # refusals in a row
        self._limit_before: int | None = None
        self._said = False

    def refused(self, retry_after_s: float, *, restore_to: int) -> float:
        """Another such refusal; return the pause every request should take.

        `restore_to` is the least limit the run returns to once one passes.
        """
        if not self._said:
            self._said = True
            log.warning(caps.HELD_ELSEWHERE)
        self._streak += 1
        if self._limit_before is None:
            self._limit_before = self._limiter.limit
            self._limiter.cut_to(1, new_event=False)
        self._limit_before = max(self._limit_before, restore_to)
        return min(caps.HELD_PAUSE_MAX_S, retry_after_s * 2.0 ** (self._streak - 1))

    def answered(self) -> None:
        """A request went through: the slots are free again."""
        self._streak = 0
        if self._limit_before is not None:
            self._limiter.raise_to(self._limit_before)
            self._limit_before = None
