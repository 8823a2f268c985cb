"""What one run shares between its reader and its workers: built once, here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from worker.app.prepare import Prepared
from worker.config import Settings
from worker.exits import StopReason
from worker.files.outputs import RunFiles
from worker.files.records import Recorder
from worker.files.writer import ResultWriter
from worker.flow.throttle import FlowLimits, Throttle
from worker.report.cost import PriceBook
from worker.report.tally import Tally
from worker.run.stop import StopController


@dataclass(frozen=True, slots=True)
class RunParts:
    """The run's settings, counts, stop, writer and throttle."""

    settings: Settings
    tally: Tally
    stop: StopController
    writer: ResultWriter
    recorder: Recorder
    throttle: Throttle
    sleep: Callable[[float], Awaitable[None]]

    @classmethod
    def build(
        cls,
        settings: Settings,
        files: RunFiles,
        ready: Prepared,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        prices: PriceBook | None = None,
    ) -> RunParts:
        """The parts, with the writer open (a write error stops the run, exit 7).

        Raises:
            ConfigError: an output file cannot be opened.
        """
        stop, tally = StopController(), Tally(prices=prices)
        shard = files.shard
        writer = ResultWriter(
            files.results,
            files.errors,
            on_failure=lambda exc: stop.request(StopReason.OUTPUT_FAILED, str(exc)),
        )
        writer.open()
        limits = FlowLimits(
            concurrency=settings.concurrency,
            rpm=settings.rpm,
            tpm=settings.tpm,
            shard=(shard.index, shard.count) if shard else (0, 1),
            max_pause_s=settings.max_retry_after_s,
            first_alone=ready.unclean,
        )
        throttle = Throttle(
            limits,
            clock=clock,
            sleep=sleep,
            remaining_jobs=tally.stats.remaining_jobs,
            progress=tally.stats.progress,
        )
        tally.resumed(succeeded=ready.resume.succeeded, failed=ready.resume.failed)
        recorder = Recorder(writer)
        return cls(settings, tally, stop, writer, recorder, throttle, sleep)
