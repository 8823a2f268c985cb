"""The day's messages: what Mira's daily cap leaves, the share kept for the
people on the account (--daily-reserve), and the wait for the next day
(--until-done).

Mira counts a message for every request that gets past its sliding window,
refused at the in-flight cap or not; the run counts each request it sends the
same way (a refusal at the daily cap or the monthly budget is given back: Mira
checks those before it counts). What the usage route says replaces the count
at the start and after each wait. A request may start only when the day
allows it: never during a wait, never into the reserve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from worker.domain.day import DayCount, DayWait, WaitReason, next_reset, wake_at
from worker.errors import QuotaError
from worker.exits import StopReason
from worker.flow.clock import Sleep

log = logging.getLogger("worker.run")

Wall = Callable[[], datetime]
# While waiting, the wall clock is read again at least this often: a machine
# that slept, or a clock that was set, wakes the run within this much.
WAIT_STEP_S = 60.0


DayReader = Callable[[], Awaitable[DayCount]]


@dataclass(frozen=True, slots=True)
class DayRules:
    """What the operator asked of the day."""

    reserve: int | None = None  # --daily-reserve
    until_done: bool = False  # --until-done
    jitter_s: float = 0.0  # after the reset, before this run asks again
    deadline: datetime | None = None  # --deadline, on the wall clock


class DayBudget:
    """The run's view of the day's messages, and its waits for the next day."""

    def __init__(
        self, rules: DayRules, *, wall: Wall, sleep: Sleep, read: DayReader | None
    ) -> None:
        self._rules = rules
        self._wall = wall
        self._sleep = sleep
        self._read = read
        self.left: int | None = None  # messages left today, as counted
        self._limit: int | None = None  # the day's cap, once a route said it
        self._counted = read is None or rules.reserve is None  # first read done
        self._lock = asyncio.Lock()
        self._wait: DayWait | None = None
        self.waits: list[DayWait] = []
        self._woke_at: datetime | None = None
        self._answered_since_wake = True

    def waiting(self) -> DayWait | None:
        """The wait under way, if any."""
        return self._wait

    async def ready(self) -> None:
        """Return when the day lets a request start: once the day's count is
        known (with a reserve), and never during a wait."""
        if self._counted and self._wait is None:
            return
        async with self._lock:  # one worker reads and sleeps; the rest queue
            if not self._counted:
                await self._count("at the start")
                self._counted = True
            while (wait := self._wait) is not None:
                left_s = (wait.until - self._wall()).total_seconds()
                if left_s > 0:
                    await self._sleep(min(left_s, WAIT_STEP_S))
                    continue
                await self._wake(wait)

    def take(self) -> bool:
        """Count one request against the day, as it is sent; False when it
        may not be sent: a wait for the next day began.

        Raises:
            QuotaError: the reserve is reached and the run does not wait.
        """
        left, reserve = self.left, self._rules.reserve
        if self._wait is not None:
            return False  # another request began one meanwhile
        if left is None:
            return True
        if reserve is not None and left <= reserve:
            why = (
                f"{left} of the day's messages are left, the --daily-reserve "
                f"of {reserve} for the people on the account"
            )
            if self._may_wait(self._next_wake()):
                self._begin("daily_reserve", why)
                return False
            raise QuotaError(
                why + self._no_wait_reason(), stop_reason=StopReason.DAILY_RESERVE
            )
        self.left = left - 1
        return True

    def give_back(self) -> None:
        """A request Mira refused before counting it (the daily cap, the
        monthly budget): not a message of the day."""
        if self.left is not None:
            self.left += 1

    def answered(self) -> None:
        """An answer came: the server's day is the one counted."""
        self._answered_since_wake = True

    def can_wait(self) -> bool:
        """True when the daily cap, met now, is waited out rather than a stop."""
        return self._may_wait(self._next_wake())

    def cap_reached(self) -> None:
        """Mira's daily cap was met: nothing more today (a wait begins)."""
        self.left = 0
        self._begin("daily_cap", "Mira's daily message cap is reached")

    def _may_wait(self, wake: datetime) -> bool:
        deadline = self._rules.deadline
        return self._rules.until_done and (deadline is None or wake <= deadline)

    def _no_wait_reason(self) -> str:
        if not self._rules.until_done:
            return ""
        return "; the day's reset comes after the --deadline, so the run stops"

    def _next_wake(self) -> datetime:
        return wake_at(
            self._wall(),
            jitter_s=self._rules.jitter_s,
            woke_at=self._woke_at,
            answered_since_wake=self._answered_since_wake,
        )

    def _begin(self, reason: WaitReason, why: str) -> None:
        if self._wait is not None:
            return  # already waiting: the first reason stands
        wait = DayWait(reason, self._wall(), self._next_wake())
        self._wait = wait
        self.waits.append(wait)
        log.warning(
            "%s: waiting for Mira's daily reset (--until-done), %s",
            why,
            wait.describe(),
            extra={"stop_reason": reason},
        )

    async def _wake(self, wait: DayWait) -> None:
        self._wait = None
        self._woke_at = self._wall()
        self._answered_since_wake = False
        if self._limit is not None and self._limit >= 0:
            self.left = self._limit  # a new day; the route may say better
        log.info("the wait for the daily reset is over: the run goes on")
        if self._rules.reserve is not None:
            await self._count("after the wait")

    async def _count(self, when: str) -> None:
        """The day's messages left, from the account routes."""
        if self._read is None:
            return
        count = await self._read()
        if count.limit is not None:
            self._limit = count.limit
        if count.limit == -1:
            self.left = None
            log.info("the plan has no daily message cap: no day to share")
            return
        if count.left is not None:
            self.left = count.left
            log.info(
                "the day's messages %s: %d left%s; the run leaves %s to the people "
                "on the account (--daily-reserve); Mira's day resets at %s",
                when,
                count.left,
                "" if count.limit is None else f" of {count.limit}",
                self._rules.reserve,
                f"{next_reset(self._wall()):%Y-%m-%d %H:%M} UTC",
            )
            return
        if self.left is None and self._limit is not None:
            self.left = self._limit  # nobody else's use known: the whole day
        log.warning(
            "the day's messages left are not known (%s): --daily-reserve counts "
            "this run's own requests%s",
            count.note or "the usage route said nothing of them",
            "" if self.left is None else f", from the day's cap of {self._limit}",
        )
        if self.left is None:
            log.warning(
                "with no daily cap known either, the run cannot keep "
                "--daily-reserve: it stops or waits at Mira's daily cap"
            )
