"""The run loop: reader -> bounded queue -> N workers, in one task group, supervised.

The supervisor owns every way the group ends early, and does all of it by
cancellation. A stop cancels the reader (which still posts the end markers) and
every worker that is only waiting, gives requests in flight a grace inside
`asyncio.timeout`, then cancels the group: --shutdown-grace for a graceful stop
(a signal, the deadline, a budget), at most FATAL_GRACE_S once the key or the
balance is gone (a 401 or 402: answers already paid for still land, and the
process still exits within 2 s). An output failure, or a second signal,
cancels the group at once. The budgets are checked here, just before each
request is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from worker.domain.job import Job
from worker.domain.prices import PriceBook
from worker.exits import StopReason
from worker.report.stats import RunStats
from worker.run.crew import Crew
from worker.run.queue import JobQueue
from worker.run.reader import Intake, Reading, count_unread, feed
from worker.run.sender import Sender
from worker.run.stop import StopController

log = logging.getLogger("worker.run")

# A 401 or 402 stops the run: requests in flight get this long to land.
FATAL_GRACE_S = 1.0
# After a stop, the rest of the input is counted for the summary within this.
COUNT_UNREAD_S = 1.0


class CostCap:
    """--max-cost: what the run has spent, and what its requests in flight may
    still cost at their estimates."""

    __slots__ = ("_cap_rub", "_pending_rub", "_prices", "_spent", "_warned")

    def __init__(
        self,
        cap_rub: float,
        *,
        spent: Callable[[], float],
        prices: Callable[[], PriceBook],
    ) -> None:
        self._cap_rub = cap_rub
        self._spent = spent
        self._prices = prices
        self._pending_rub = 0.0
        self._warned = False

    def _estimate(self, job: Job) -> float:
        """What a request may cost at most, RUB, at its estimated tokens (0
        when its model has no price)."""
        rubles = self._prices().rubles(
            job.model, job.prompt_tokens_est, job.completion_tokens_est
        )
        return rubles or 0.0

    def admit(self, job: Job) -> str | None:
        """Take `job`'s estimate in; why not, when it could pass the cap."""
        spent, estimate = self._spent(), self._estimate(job)
        if spent + self._pending_rub + estimate > self._cap_rub:
            return (
                f"the next request could take the cost past --max-cost "
                f"{self._cap_rub:.2f} RUB: {spent:.4f} RUB spent, "
                f"{self._pending_rub:.4f} RUB in flight"
            )
        self._pending_rub += estimate
        if not self._warned and spent + self._pending_rub >= 0.8 * self._cap_rub:
            self._warned = True
            log.warning(
                "80%% of --max-cost %.2f RUB reached (%.4f RUB spent, %.4f in flight)",
                self._cap_rub,
                spent,
                self._pending_rub,
            )
        return None

    def settled(self, job: Job) -> None:
        """`job`'s request ended: its cost is spent, or nothing."""
        self._pending_rub = max(0.0, self._pending_rub - self._estimate(job))


class Permit:
    """The supervisor's say just before each send: none while the run is
    stopping, none once the token budget is spent, and none that could take the
    cost past --max-cost (each of which stops it)."""

    __slots__ = ("_cost_cap", "_stats", "_stop", "_token_budget")

    def __init__(
        self,
        stop: StopController,
        stats: RunStats,
        token_budget: int | None,
        cost_cap: CostCap | None = None,
    ) -> None:
        self._stop = stop
        self._stats = stats
        self._token_budget = token_budget
        self._cost_cap = cost_cap

    def grant(self, job: Job) -> bool:
        """True when `job`'s request may be sent now."""
        budget, used = self._token_budget, self._stats.total_tokens
        if budget is not None and used >= budget:
            self._stop.request(
                StopReason.TOKEN_BUDGET, f"{used} tokens used of a budget of {budget}"
            )
        if self._stop.stopping.is_set():
            return False
        if self._cost_cap is not None and (why := self._cost_cap.admit(job)):
            self._stop.request(StopReason.COST_BUDGET, why)
            return False
        return True

    def done(self, job: Job) -> None:
        """A granted request ended."""
        if self._cost_cap is not None:
            self._cost_cap.settled(job)


class Pipeline:
    """One run over one input stream."""

    def __init__(
        self,
        *,
        intake: Intake,
        sender: Sender,
        crew: Crew,
        stop: StopController,
        concurrency: int,
        deadline_s: float | None,
        grace_s: float,
    ) -> None:
        self._intake = intake
        self._sender = sender
        self._crew = crew
        self._stop = stop
        self._workers = concurrency
        self._deadline_s = deadline_s
        self._grace_s = grace_s
        self._reading: asyncio.Task[None] | None = None

    async def run(self) -> Reading:
        """Process every job of the input until done or stopped; return what the
        reader learned. How the run ended is left on the StopController (no
        reason = completed).
        """
        work = asyncio.create_task(self._work(), name="mira-batch work")
        try:
            await self._supervise(work)
        finally:
            work.cancel()
            # asyncio.wait never raises the task's exception, nor swallows a
            # cancellation of this task.
            await asyncio.wait([work])
        if not work.cancelled() and (error := work.exception()) is not None:
            raise error  # a bug: the caller reports it with its traceback
        if not self._intake.tally.stats.input_complete:
            count_unread(self._intake, budget_s=COUNT_UNREAD_S)
        return self._intake.reading()

    async def _work(self) -> None:
        queue = JobQueue(self._workers)
        async with asyncio.TaskGroup() as group:
            self._reading = group.create_task(
                feed(self._intake, queue, workers=self._workers)
            )
            for _ in range(self._workers):
                self._crew.start(group, self._sender.work(queue))

    async def _supervise(self, work: asyncio.Task[None]) -> None:
        stop = self._stop
        try:
            async with asyncio.timeout(self._deadline_s):
                await _first(work, stop.stopping)
        except TimeoutError:
            stop.request(
                StopReason.DEADLINE,
                f"the deadline of {self._deadline_s:g} s was reached",
            )
        if work.done():
            return
        if self._reading is None:
            return  # stopped before anything started: the group is cancelled
        self._reading.cancel()
        self._crew.drain()
        why = await self._drain(work)
        if not work.done() and (in_flight := self._crew.sending_count()):
            stop.abandoned = in_flight
            log.warning(
                "%s: cancelling %d requests in flight; Mira keeps their slots "
                "held for up to 5 minutes",
                why,
                in_flight,
            )

    async def _drain(self, work: asyncio.Task[None]) -> str:
        """Give requests in flight their grace; say why it ended, if early."""
        stop, loop = self._stop, asyncio.get_running_loop()
        grace_s = self._grace_s
        end, hurried = loop.time() + grace_s, False
        while not work.done():
            if stop.hurried.is_set() and not hurried:
                # A 401 or 402: what is paid for may still land, briefly.
                hurried, grace_s = True, min(grace_s, FATAL_GRACE_S)
                end = min(end, loop.time() + grace_s)
            try:
                async with asyncio.timeout_at(end):
                    await _first(
                        work, stop.cancelling, *(() if hurried else (stop.hurried,))
                    )
            except TimeoutError:
                return f"grace period of {grace_s:g} s over"
            if stop.cancelling.is_set():
                return "the stop cannot wait"
        return ""


async def _first(work: asyncio.Task[None], *events: asyncio.Event) -> None:
    """Return when the work is done or an event is set, whichever comes first."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait([work, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
