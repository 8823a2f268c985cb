"""What one run shares between its reader and its workers, and what it builds from
them: the pipeline, the scheduler's metrics, the summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from worker.config import Settings
from worker.exits import StopReason
from worker.files.jobs import Shard
from worker.files.records import RecordIds
from worker.files.resume import ResumeState
from worker.files.writer import ResultWriter
from worker.flow.limiters import Clock
from worker.flow.throttle import Throttle
from worker.report.cost import Prices, run_cost
from worker.report.metrics import Metrics, RunCollector
from worker.report.progress import ProgressReporter
from worker.report.summary import RunStats, build_summary
from worker.run.pipeline import Pipeline
from worker.run.reader import make_intake
from worker.run.sender import Client, Sender
from worker.run.stop import StopController


@dataclass(frozen=True, slots=True)
class RunParts:
    """What one run shares between its reader and its workers."""

    settings: Settings
    stats: RunStats
    writer: ResultWriter
    stop: StopController
    throttle: Throttle

    @classmethod
    def build(
        cls,
        settings: Settings,
        stats: RunStats,
        stop: StopController,
        clock: Clock,
        *,
        results: Path,
        errors: Path,
        shard: Shard | None,
    ) -> RunParts:
        """The writer (open: a write error stops the run, exit 7) and the throttle.

        Raises:
            ConfigError: an output file cannot be opened.
        """
        writer = ResultWriter(
            results,
            errors,
            on_failure=lambda exc: stop.request(StopReason.OUTPUT_FAILED, str(exc)),
        )
        writer.open()
        throttle = Throttle(
            settings,
            stop,
            stats,
            clock,
            shard=(shard.index, shard.count) if shard else (0, 1),
        )
        return cls(settings, stats, writer, stop, throttle)

    def pipeline(
        self,
        source: BinaryIO,
        client: Client,
        *,
        resume: ResumeState,
        shard: Shard | None,
    ) -> Pipeline:
        """The reader and the workers, wired to the run's shared parts."""
        settings, record_ids = self.settings, RecordIds()
        intake = make_intake(
            source,
            default_model=settings.model,
            shard=shard,
            resume=resume,
            stats=self.stats,
            writer=self.writer,
            record_ids=record_ids,
        )
        sender = Sender(
            settings,
            client,
            self.throttle,
            self.writer,
            stop=self.stop,
            stats=self.stats,
            record_ids=record_ids,
        )
        return Pipeline(
            intake=intake,
            sender=sender,
            throttle=self.throttle,
            stop=self.stop,
            concurrency=settings.concurrency,
            deadline_s=settings.deadline_s,
            grace_s=settings.shutdown_grace_s,
        )

    def metrics(self, stem: str, prices: Prices) -> Metrics | None:
        """The scheduler's metrics, when --metrics-file or --metrics-push asks."""
        settings, stats = self.settings, self.stats
        if settings.metrics_file is None and settings.metrics_push is None:
            return None
        collector = RunCollector(stem, stats, lambda: float(self.cost(prices)["total"]))
        return Metrics(
            collector,
            file=settings.metrics_file,
            push_url=settings.metrics_push,
            stem=stem,
        )

    def progress(self, out: TextIO, prices: Prices) -> ProgressReporter:
        """The live display or status lines, as --progress asks."""
        return ProgressReporter(
            self.settings,
            self.stats,
            self.throttle.limiter,
            out,
            cost=lambda: float(self.cost(prices)["total"]),
        )

    def summary(
        self, files: dict[str, str], *, elapsed_s: float, prices: Prices
    ) -> dict[str, Any]:
        """The summary of how the run went (CONTRACT section 5)."""
        limiter = self.throttle.limiter
        return build_summary(
            self.stats,
            reason=self.stop.reason,
            message=self.stop.message,
            elapsed_s=elapsed_s,
            files=files,
            concurrency={
                "ceiling": self.settings.concurrency,
                "final": limiter.limit,
                "decreases": limiter.decreases,
            },
            learned=self.throttle.learner.summary(),
            cost=self.cost(prices),
        )

    def cost(self, prices: Prices) -> dict[str, Any]:
        """What the tokens used so far cost, by model."""
        by_model = self.stats.tokens_by_model
        return run_cost(prices, {m: (p, c) for m, (p, c) in by_model.items()})
