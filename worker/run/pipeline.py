"""The run loop: reader -> bounded queue -> N workers, in one task group, supervised.

The supervisor owns every way the group ends early, and does all of it by
cancellation. A graceful stop cancels the reader (which still posts the end
markers) and every worker that is only waiting, gives requests in flight the
grace inside `asyncio.timeout`, then cancels the group. A fatal stop, or a
second signal, cancels the group at once. The deadline is a graceful stop, and
the budgets are checked here, just before each request is sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import BinaryIO

from worker.exits import StopReason
from worker.report.stats import RunStats
from worker.run.crew import Crew
from worker.run.queue import JobQueue
from worker.run.reader import Intake, feed
from worker.run.sender import Sender
from worker.run.stop import StopController

log = logging.getLogger("worker.run")


class Permit:
    """The supervisor's say just before each send: none while the run is
    stopping, and none once the token budget is spent (which stops it)."""

    __slots__ = ("_stats", "_stop", "_token_budget")

    def __init__(
        self, stop: StopController, stats: RunStats, token_budget: int | None
    ) -> None:
        self._stop = stop
        self._stats = stats
        self._token_budget = token_budget

    def __call__(self) -> bool:
        budget, used = self._token_budget, self._stats.total_tokens
        if budget is not None and used >= budget:
            self._stop.request(
                StopReason.TOKEN_BUDGET, f"{used} tokens used of a budget of {budget}"
            )
        return not self._stop.stopping.is_set()


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

    async def run(self, source: BinaryIO) -> None:
        """Process every job of `source` until done or stopped.

        How the run ended is left on the StopController (no reason = completed).
        """
        work = asyncio.create_task(self._work(source), name="mira-batch work")
        try:
            await self._supervise(work)
        finally:
            work.cancel()
            # asyncio.wait never raises the task's exception, nor swallows a
            # cancellation of this task.
            await asyncio.wait([work])
        if not work.cancelled() and (error := work.exception()) is not None:
            raise error  # a bug: the caller reports it with its traceback

    async def _work(self, source: BinaryIO) -> None:
        queue = JobQueue(self._workers)
        async with asyncio.TaskGroup() as group:
            self._reading = group.create_task(
                feed(source, self._intake, queue, workers=self._workers)
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
        try:
            async with asyncio.timeout(self._grace_s):
                await _first(work, stop.cancelling)
        except TimeoutError:
            why = f"grace period of {self._grace_s:g} s over"
        else:
            why = "the stop cannot wait"
        if not work.done() and (in_flight := self._crew.sending_count()):
            stop.abandoned = in_flight
            log.warning(
                "%s: cancelling %d requests in flight; Mira keeps their slots "
                "held for up to 5 minutes",
                why,
                in_flight,
            )


async def _first(work: asyncio.Task[None], event: asyncio.Event) -> None:
    """Return when the work is done or the event is set, whichever comes first."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([work, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
