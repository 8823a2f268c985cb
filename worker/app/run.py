"""`mira-batch run`: prepare the files, run the pipeline, write the summary."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from worker.api.account import read_prices
from worker.api.client import Client, make_client
from worker.app.loop import build_pipeline
from worker.app.parts import RunParts
from worker.app.prepare import Prepared, ResumeMode, prepared
from worker.app.reporting import RunReport
from worker.config import Settings
from worker.files.outputs import RunFiles
from worker.report.cost import PriceBook
from worker.run.signals import handle_signals

__all__ = ["ResumeMode", "execute_run"]

FSYNC_INTERVAL_S = 1.0


async def execute_run(
    settings: Settings,
    files: RunFiles,
    *,
    mode: ResumeMode = "resume",
    force: bool = False,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    client_factory: Callable[[Settings, str], Client] = make_client,
    prices: PriceBook | None = None,
    price_overrides: Sequence[str] = (),
) -> int:
    """Run one batch and return the process exit code, its cost at `prices`
    (by default those Mira's pricing route gives, else its list prices).

    Raises:
        ConfigError: bad settings, key, input or output files; nothing was sent.
    """
    out = out or sys.stderr
    with prepared(settings, files, mode=mode, force=force) as ready:
        prices = prices or await read_prices(settings, price_overrides)
        parts = RunParts.build(
            settings, files, ready, clock=clock, sleep=sleep, prices=prices
        )
        report = RunReport(parts, files.stem)
        started = time.monotonic()
        client = client_factory(settings, ready.api_key)
        await _drive(parts, report, ready, client, files, out)
        summary = report.summary(files.listing(), elapsed_s=time.monotonic() - started)
        return await report.finish(summary, files, out)


async def _drive(
    parts: RunParts,
    report: RunReport,
    ready: Prepared,
    client: Client,
    files: RunFiles,
    out: TextIO,
) -> None:
    """The pipeline over the input, with the writer syncing, the metrics and
    the progress display around it, and the signals handled."""
    settings = parts.settings
    with handle_signals(parts.stop):
        async with (
            parts.writer.syncing(FSYNC_INTERVAL_S),
            report.metrics_every(settings.progress_interval_s),
            report.recording(),
            client,
        ):
            pipeline = build_pipeline(
                parts,
                ready,
                client,
                shard=files.shard,
                spent=report.total_cost,
                estimate=lambda job: report.estimate(
                    job.model, job.prompt_tokens_est, job.completion_tokens_est
                ),
            )
            async with report.progress(out):
                await pipeline.run(ready.source)
