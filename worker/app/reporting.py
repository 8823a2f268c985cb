"""What a run shows while it runs and leaves when it ends: the display, the
scheduler's metrics, the summary file and its rendering."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TextIO

from worker.app.parts import RunParts
from worker.errors import ConfigError
from worker.exits import StopReason
from worker.files.outputs import RunFiles
from worker.page.report import write_report
from worker.report.progress import ProgressReporter
from worker.report.summary import build_summary, write_summary
from worker.report.timeline import Gauges, Timeline
from worker.run.retry import daily_cap_times

if TYPE_CHECKING:
    from worker.report.metrics import Metrics

log = logging.getLogger("worker.run")
TIMELINE_TICK_S = 0.25


@asynccontextmanager
async def _every(interval_s: float, step: Callable[[], object]) -> AsyncIterator[None]:
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


class RunReport:
    """The reporting side of one run, over its parts, at the given prices."""

    def __init__(self, parts: RunParts, stem: str) -> None:
        self._parts = parts
        self._prices = parts.tally.prices
        self._metrics = self._make_metrics(stem)
        self._timeline = Timeline(tuple(parts.throttle.refusals))
        self._started = time.monotonic()

    @asynccontextmanager
    async def recording(self) -> AsyncIterator[None]:
        """Keep the timeline while the block lasts: the in-flight peak every
        TIMELINE_TICK_S, a point every step, and one at each end."""
        self._started = time.monotonic()
        self._sample(final=True)
        try:
            async with _every(TIMELINE_TICK_S, self._sample):
                yield
        finally:
            self._sample(final=True)

    def _sample(self, *, final: bool = False) -> None:
        parts, timeline = self._parts, self._timeline
        stats = parts.tally.stats
        elapsed_s = time.monotonic() - self._started
        timeline.peak(stats.in_flight)
        if final or timeline.due(elapsed_s):
            gauges = Gauges(
                in_flight=stats.in_flight,
                cap=parts.throttle.limiter.limit,
                refusals=dict(parts.throttle.refusals),
                cost_rub=self.total_cost(),
            )
            timeline.sample(elapsed_s, stats, gauges)

    def cost(self) -> dict[str, Any]:
        """What the answers so far cost, by model."""
        stats = self._parts.tally.stats
        tokens = {m: (p, c) for m, (p, c) in stats.tokens_by_model.items()}
        return self._prices.summary(tokens, stats.kopecks_by_model)

    def total_cost(self) -> float:
        """What the run has spent so far, RUB."""
        return float(self.cost()["total"])

    def estimate(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """What a request may cost at most, RUB, at its estimated tokens (0 when
        its model has no price)."""
        return self._prices.rubles(model, prompt_tokens, completion_tokens) or 0.0

    def _make_metrics(self, stem: str) -> Metrics | None:
        """The scheduler's metrics, when --metrics-file or --metrics-push asks."""
        settings = self._parts.settings
        if settings.metrics_file is None and settings.metrics_push is None:
            return None
        # prometheus_client is loaded only when metrics are asked for.
        from worker.report.metrics import Metrics, RunCollector

        collector = RunCollector(stem, self._parts.tally.stats, self.total_cost)
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
        async with _every(interval_s, self._metrics.write):
            yield

    def progress(self, out: TextIO) -> ProgressReporter:
        """The live display or status lines, as --progress asks."""
        parts = self._parts
        return ProgressReporter(
            parts.settings,
            parts.tally.stats,
            parts.throttle.limiter,
            out,
            cost=self.total_cost,
        )

    def summary(self, files: dict[str, str], *, elapsed_s: float) -> dict[str, Any]:
        """The summary of how the run went (CONTRACT section 5)."""
        parts = self._parts
        limiter = parts.throttle.limiter
        return build_summary(
            parts.tally.stats,
            reason=parts.stop.reason,
            message=parts.stop.message,
            elapsed_s=elapsed_s,
            files=files,
            concurrency={
                "ceiling": parts.settings.concurrency,
                "final": limiter.limit,
                "decreases": limiter.decreases,
            },
            learned=parts.throttle.learner.summary(),
            cost=self.cost(),
            account=self._account(),
        ) | {"timeline": self._timeline.export()}

    def _account(self) -> dict[str, Any]:
        """What the run cost the account beyond its answers (CONTRACT section
        13): the refusals, those Mira counts against the day, the slots left
        held at a stop, and the daily cap when it stopped the run."""
        parts = self._parts
        refusals = dict(parts.throttle.refusals)
        account: dict[str, Any] = {
            "refusals": refusals,
            "daily_messages_on_refusals": sum(
                refusals[kind] for kind in ("in_flight", "gpu_queue", "window")
            ),
            "slots_left_held": parts.stop.abandoned,
        }
        if parts.stop.reason is StopReason.DAILY_CAP and parts.stop.at is not None:
            account["daily_cap"] = daily_cap_times(parts.stop.at)
        return account

    async def finish(
        self, summary: dict[str, Any], files: RunFiles, out: TextIO
    ) -> int:
        """Write the summary file and show it, then the report page and the last
        metrics; return the exit code (7 when the summary could not be written;
        a report that cannot be written is only a warning)."""
        settings = self._parts.settings
        code = write_summary(
            summary, files.summary, out, log_format=settings.log_format
        )
        try:
            write_report(files, summary)
        except (OSError, ConfigError) as exc:
            log.warning("could not write the report %s: %s", files.report, exc)
        if self._metrics is not None:
            await self._metrics.finish(code)
        return code
