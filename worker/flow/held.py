"""Mira's in-flight slots held by no request of the run's.

Mira's backend frees a slot only when it returns an answer: a connection cut,
its 408 at 30 s, or a full GPU queue leaves the slot held until the user's
slot counter expires, `expiry_s` (300 s in its source) after the user's last
acquire; every acquire renews it. So the run's own cut requests hold slots as
long as it goes on sending, and it plans around them: one fewer in flight for
each, and with all of them held, one request alone asks whether they are (a
server that frees them answers it, and the run stops counting).

Slots held elsewhere (an earlier run stopped hard, the web chat) show as
Mira's in-flight refusal with fewer than its 3 of the run's own in flight.
Such a refusal teaches no cap; each one costs a daily message, so one request
at a time asks, after pauses that grow (5, 10, 20 ... s) but never past the
expiry, and last just until then when the run knows when they free.
"""

from __future__ import annotations

import logging
import math

from worker.domain.refusal import MIRA_IN_FLIGHT, held_pause_s
from worker.flow.clock import Clock
from worker.flow.slots import AdaptiveLimiter

log = logging.getLogger("worker.run")

HELD_ELSEWHERE = (
    "Mira's in-flight slots are held by requests that are not this run's (an "
    "earlier run stopped hard, an answer cut at the server's timeout, or the web "
    "chat); Mira frees them up to %g s after they were taken. Waiting with "
    "growing pauses, as each refusal uses one of the day's messages"
)


class HeldSlots:
    """The slots held at Mira by no request of the run's: its own leaked
    ones, counted, and an episode of refusals for those held elsewhere."""

    __slots__ = (
        "_ask_at",
        "_clock",
        "_disproved",
        "_elsewhere_until",
        "_episode_at",
        "_expiry_s",
        "_last_acquire",
        "_last_leak_at",
        "_level",
        "_limit_before",
        "_limiter",
        "_own",
        "_said",
        "_streak",
    )

    def __init__(
        self,
        limiter: AdaptiveLimiter,
        *,
        clock: Clock,
        expiry_s: float,
        held_for_s: float = 0.0,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._expiry_s = expiry_s
        self._own = 0  # the run's own leaked slots
        self._last_acquire = -math.inf
        self._last_leak_at = -math.inf
        self._disproved = False  # the server freed what the run counted held
        # An earlier run that did not end cleanly: its slots may be held so long.
        self._elsewhere_until = clock() + held_for_s if held_for_s > 0 else -math.inf
        self._streak = 0  # refusals in a row
        self._episode_at = math.inf  # when the refusals began
        self._level = 0  # the run's requests that still went through then
        self._ask_at = math.inf  # when one more is tried
        self._limit_before: int | None = None
        self._said = False

    @property
    def streak(self) -> int:
        """Such refusals in a row so far (the pause doubles with each)."""
        return self._streak

    @property
    def expiry_s(self) -> float:
        """How long after the last acquire Mira frees a leaked slot."""
        return self._expiry_s

    def own(self, at: float | None = None) -> int:
        """The run's own leaked slots still held now (or at the time `at`)."""
        at = self._clock() if at is None else at
        if self._own and at >= self._last_acquire + self._expiry_s:
            log.info("the slots this run's cut requests held at Mira are free again")
            self._own = 0
        return self._own

    def episode(self) -> bool:
        """True while refusals say slots are held elsewhere."""
        return self._limit_before is not None

    def held_for_s(self) -> float:
        """How long the slots the run knows of stay held (0: none, or unknown)."""
        now = self._clock()
        until = self._elsewhere_until
        if self.own():
            until = max(until, self._last_acquire + self._expiry_s)
        return max(0.0, until - now)

    def acquired(self, sent_at: float) -> None:
        """A request of the run's got past the in-flight cap (it renews the
        expiry of every held slot)."""
        self._last_acquire = max(self._last_acquire, sent_at)

    def leaked(self, sent_at: float) -> int:
        """A request took a slot and gave no answer back; the run's own
        leaked slots now (0 on a server shown not to hold them)."""
        self.acquired(sent_at)
        if self._disproved:
            return 0
        self._own = min(MIRA_IN_FLIGHT, self.own() + 1)
        self._last_leak_at = self._clock()
        log.info(
            "a request of this run was cut after Mira took its in-flight slot: "
            "%d of %d slots stay held until %g s after the last request went "
            "through; fewer in flight meanwhile",
            self._own,
            MIRA_IN_FLIGHT,
            self._expiry_s,
        )
        return self._own

    def went_through(self, position: int, sent_at: float) -> None:
        """An answer came for a request sent at `sent_at` at `position` in
        flight: sent after the last cut one, with more slots free than counted
        held, it says this server frees them (it holds none of the run's)."""
        own = self.own(at=sent_at)  # none once they expired before it went
        if own and sent_at > self._last_leak_at and position + own > MIRA_IN_FLIGHT:
            self._disproved = True
            self._own = 0
            log.info(
                "the server freed the slots of cut requests: none are counted held"
            )

    def refused(
        self, *, restore_to: int, at_most: int | None = None, ahead: int = 0
    ) -> None:
        """Another refusal with the slots held elsewhere, with `ahead` of the
        run's requests at the server before it: the run keeps to as many as
        went through (one alone when none did). `restore_to` is the least
        limit it returns to once the slots free, and `at_most` the most
        (below a level just refused)."""
        if self.own():
            log.info(
                "every in-flight slot at Mira is held by this run's cut requests: "
                "no request until they free, in %.0f s",
                self.held_for_s(),
            )
        elif not self._said:
            self._said = True
            log.warning(HELD_ELSEWHERE, self._expiry_s)
        level = max(0, min(ahead, MIRA_IN_FLIGHT - 1))
        if self._limit_before is None:
            self._limit_before = self._limiter.limit
            self._episode_at = self._clock()
            self._level = level
        else:
            self._level = min(self._level, level)
        self._limiter.cut_to(max(1, self._level), new_event=False)
        # With some of the run's requests going through, one more is tried
        # when the held slots should be free: at most one refusal each time.
        self._ask_at = self._clock() + held_pause_s(
            self._streak, self.held_for_s(), self._expiry_s
        )
        self._streak += 1
        self._limit_before = max(self._limit_before, restore_to)
        if at_most is not None:
            self._limit_before = max(1, min(self._limit_before, at_most))

    def answered(self, sent_at: float, position: int) -> None:
        """A request sent at `sent_at`, at `position` in flight, went through.
        Sent after the refusals began, with more of the run's requests at the
        server than went through then, it says the slots are free again (one
        sent before says nothing of them)."""
        if sent_at < self._episode_at:
            return
        if position <= self._level:
            # Only the slots that went through all along: time to ask for one more?
            wanted = self._limit_before or 0
            if (
                wanted > self._level >= self._limiter.limit
                and self._clock() >= self._ask_at
            ):
                self._limiter.raise_to(self._level + 1)
            return
        self._streak = 0
        self._episode_at = math.inf
        self._level = 0
        if self._limit_before is not None:
            self._limiter.raise_to(self._limit_before)
            self._limit_before = None
