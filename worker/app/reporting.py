"""What a run shows while it runs and leaves when it ends: the display, the
scheduler's metrics, the summary file and its rendering."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from worker.app.parts import RunParts
from worker.exits import StopReason
from worker.files.outputs import atomic_write
from worker.logs import emit, scrub_bytes
from worker.report.cost import run_cost
from worker.report.progress import ProgressReporter
from worker.report.render import render_summary
from worker.report.summary import build_summary
from worker.run.retry import daily_cap_times

if TYPE_CHECKING:
    from worker.report.metrics import Metrics

log = logging.getLogger("worker.run")


class RunReport:
    """The reporting side of one run, over its parts, at the given prices."""

    def __init__(self, parts: RunParts, stem: str) -> None:
        self._parts = parts
        self._prices = parts.tally.prices
        self._metrics = self._make_metrics(stem)

    def cost(self) -> dict[str, Any]:
        """What the answers so far cost, by model."""
        stats = self._parts.tally.stats
        tokens = {m: (p, c) for m, (p, c) in stats.tokens_by_model.items()}
        return run_cost(self._prices, tokens, stats.kopecks_by_model)

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
        metrics = self._metrics
        if metrics is None:
            yield
            return
        writing = asyncio.create_task(metrics.write_every(interval_s))
        try:
            yield
        finally:
            writing.cancel()
            await asyncio.wait([writing])

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
        )

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

    async def finish(self, summary: dict[str, Any], path: Path, out: TextIO) -> int:
        """Write the summary file, show it (a table, or one JSON log line), and
        the last metrics; return the exit code: 7 when even the summary could
        not be written."""
        document = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
        try:
            atomic_write(path, scrub_bytes(document))
        except OSError as exc:
            log.error("could not write the summary %s: %s", path, exc.strerror)
            summary["exit_code"] = StopReason.OUTPUT_FAILED.exit_code
        if self._parts.settings.log_format == "json":
            # Log collectors get the summary as one JSON line like every other.
            log.info(
                "run finished: %s",
                summary["stop_reason"],
                extra={"stop_reason": summary["stop_reason"], "summary": summary},
            )
        else:
            emit(out, render_summary(summary))
        code: int = summary["exit_code"]
        if self._metrics is not None:
            await self._metrics.finish(code)
        return code
