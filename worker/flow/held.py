"""Mira's in-flight cap full while fewer than its 3 of ours are in flight: the
other slots are held elsewhere (an earlier run stopped hard, an answer cut at the
server's timeout, the web chat), and Mira frees leaked ones 5 minutes after they
were last taken. Such a refusal teaches no cap; each one costs a daily message,
so one request at a time asks, after longer and longer pauses."""

from __future__ import annotations

import logging

from worker.flow.slots import AdaptiveLimiter

log = logging.getLogger("worker.run")

HELD_ELSEWHERE = (
    "Mira's in-flight slots are held by requests that are not this run's (an "
    "earlier run stopped hard, an answer cut at the server's timeout, or the web "
    "chat); Mira frees them up to 5 minutes after they were taken. Waiting with "
    "growing pauses, as each refusal uses one of the day's messages"
)


class HeldElsewhere:
    """An episode of refusals with the account's slots held elsewhere."""

    __slots__ = ("_limit_before", "_limiter", "_said", "_streak")

    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self._limiter = limiter
        self._streak = 0  # refusals in a row
        self._limit_before: int | None = None
        self._said = False

    @property
    def streak(self) -> int:
        """Such refusals in a row so far (the pause doubles with each)."""
        return self._streak

    def refused(self, *, restore_to: int) -> None:
        """Another such refusal: one request at a time from now.

        `restore_to` is the least limit the run returns to once one passes.
        """
        if not self._said:
            self._said = True
            log.warning(HELD_ELSEWHERE)
        self._streak += 1
        if self._limit_before is None:
            self._limit_before = self._limiter.limit
            self._limiter.cut_to(1, new_event=False)
        self._limit_before = max(self._limit_before, restore_to)

    def answered(self) -> None:
        """A request went through: the slots are free again."""
        self._streak = 0
        if self._limit_before is not None:
            self._limiter.raise_to(self._limit_before)
            self._limit_before = None
