"""What a run shows while it runs: the timeline kept for the report, the
scheduler's metrics file, and the live display; all read the run through a
narrow view (its counts, its flow limits, its prices), never its parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol, TextIO

from worker.config import Settings
from worker.domain.day import DayWait
from worker.domain.prices import PriceBook
from worker.domain.refusal import REFUSAL_KINDS
from worker.domain.summary import Concurrency, Cost, Learned, Timeline
from worker.report.progress import ProgressReporter
from worker.report.stats import RunStats
from worker.report.timeline import Gauges, TimelineSampler

if TYPE_CHECKING:
    from worker.report.metrics import Metrics

TIMELINE_TICK_S = 0.25


class DayView(Protocol):
    """What reporting reads of the day's messages (--until-done,
    --daily-reserve): the wait under way, the waits so far, what is left."""

    @property
    def left(self) -> int | None: ...

    @property
    def waits(self) -> Sequence[DayWait]: ...

    def waiting(self) -> DayWait | None: ...


class FlowView(Protocol):
    """What reporting reads of the flow control: the in-flight limit, its
    ceiling, how often it fell, how long every request is held back, and what
    was learned of the account."""

    @property
    def limit(self) -> int: ...

    @property
    def ceiling(self) -> int: ...

    @property
    def decreases(self) -> int: ...

    def paused_s(self) -> float: ...

    def learned(self) -> Learned: ...

    @property
    def day(self) -> DayView | None: ...


@asynccontextmanager
async def every(interval_s: float, step: Callable[[], object]) -> AsyncIterator[None]:
    """`step` every `interval_s` while the block lasts."""

    async def repeat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            step()

    task = asyncio.create_task(repeat())
    try:
        yield
    finally:
        task.cancel()
        # asyncio.wait neither raises the task's error nor swallows our cancel.
        await asyncio.wait([task])


class LiveReport:
    """The reporting side of one run, over its counts, flow and prices."""

    def __init__(
        self,
        settings: Settings,
        stats: RunStats,
        flow: FlowView,
        prices: Callable[[], PriceBook],
        *,
        stem: str,
    ) -> None:
        self._settings = settings
        self.stats = stats
        self._flow = flow
        self._prices = prices  # the run's, as they are now (read late)
        self._timeline = TimelineSampler(REFUSAL_KINDS)
        self._started = time.monotonic()
        self._metrics = self._make_metrics(stem)

    @asynccontextmanager
    async def recording(self) -> AsyncIterator[None]:
        """Keep the timeline while the block lasts: the in-flight peak every
        TIMELINE_TICK_S, a point every step, and one at each end."""
        self._started = time.monotonic()
        self._sample(final=True)
        try:
            async with every(TIMELINE_TICK_S, self._sample):
                yield
        finally:
            self._sample(final=True)

    def _sample(self, *, final: bool = False) -> None:
        timeline, stats = self._timeline, self.stats
        elapsed_s = time.monotonic() - self._started
        timeline.peak(stats.in_flight)
        if final or timeline.due(elapsed_s):
            gauges = Gauges(
                in_flight=stats.in_flight,
                cap=self._flow.limit,
                refusals=dict(stats.refusals),
                cost_rub=self.spent_rub(),
            )
            timeline.sample(elapsed_s, stats, gauges)

    def timeline(self) -> Timeline:
        """The timeline so far, as the summary keeps it."""
        return self._timeline.export()

    def cost(self) -> Cost:
        """What the answers so far cost, by model, at the run's prices."""
        stats = self.stats
        tokens = {m: (p, c) for m, (p, c) in stats.tokens_by_model.items()}
        return self._prices().summary(tokens, stats.kopecks_by_model)

    def spent_rub(self) -> float:
        """What the run has spent so far, RUB (cheap: read per request)."""
        return self.stats.kopecks / 100

    def concurrency(self) -> Concurrency:
        """The in-flight limit as the run ends."""
        flow = self._flow
        return Concurrency(
            ceiling=flow.ceiling, final=flow.limit, decreases=flow.decreases
        )

    def learned(self) -> Learned:
        """What the run learned of the account's limits."""
        return self._flow.learned()

    def waiting(self) -> DayWait | None:
        """The wait for Mira's daily reset under way, if any."""
        day = self._flow.day
        return None if day is None else day.waiting()

    def _waiting_until(self) -> float:
        """When the wait for the daily reset ends, Unix time; 0: no wait."""
        wait = self.waiting()
        return 0.0 if wait is None else wait.until.timestamp()

    def waits(self) -> Sequence[DayWait]:
        """The waits for Mira's daily reset so far."""
        day = self._flow.day
        return () if day is None else day.waits

    def daily_left(self) -> int | None:
        """The day's messages left, as counted (None: not counted)."""
        day = self._flow.day
        return None if day is None else day.left

    def _make_metrics(self, stem: str) -> Metrics | None:
        """The scheduler's metrics, when --metrics-file or --metrics-push asks."""
        settings = self._settings
        if settings.metrics_file is None and settings.metrics_push is None:
            return None
        # prometheus_client is loaded only when metrics are asked for.
        from worker.report.metrics import Metrics, RunCollector

        collector = RunCollector(
            stem, self.stats, self.spent_rub, waiting_until=self._waiting_until
        )
        return Metrics(
            collector,
            file=settings.metrics_file,
            push_url=settings.metrics_push,
            stem=stem,
        )

    @asynccontextmanager
    async def metrics_every(self, interval_s: float) -> AsyncIterator[None]:
        """The metrics file, every `interval_s` while the block lasts."""
        if self._metrics is None:
            yield
            return
        async with every(interval_s, self._metrics.write):
            yield

    async def finish_metrics(self, exit_code: int) -> None:
        """The last metrics: written, and pushed when asked."""
        if self._metrics is not None:
            await self._metrics.finish(exit_code)

    def progress(self, out: TextIO) -> ProgressReporter:
        """The live display or status lines, as --progress asks."""
        return ProgressReporter(
            self._settings,
            self.stats,
            self._flow,
            out,
            cost=self.spent_rub,
            waiting=self.waiting,
        )
