"""`mira-batch run`: prepare the files, run the pipeline, write the summary."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

from worker.api.client import Client, make_client
from worker.app.loop import build_pipeline
from worker.app.parts import RunParts
from worker.app.prepare import ResumeMode, prepared
from worker.app.reporting import RunReport
from worker.config import Settings
from worker.files.jobs import Shard
from worker.files.outputs import RunFiles
from worker.report.cost import LIST_PRICES_RUB_PER_M, Prices, price_table
from worker.run.signals import handle_signals

__all__ = ["ResumeMode", "execute_run", "run_from_args"]

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
    prices: Prices = LIST_PRICES_RUB_PER_M,
) -> int:
    """Run one batch and return the process exit code.

    Raises:
        ConfigError: bad settings, key, input or output files; nothing was sent.
    """
    out = out or sys.stderr
    with prepared(settings, files, mode=mode, force=force) as ready:
        parts = RunParts.build(settings, files, ready, clock=clock, sleep=sleep)
        report = RunReport(parts, prices)
        client = client_factory(settings, ready.api_key)
        metrics = report.metrics(files.stem)
        started = time.monotonic()
        with handle_signals(parts.stop):
            async with (
                parts.writer.syncing(FSYNC_INTERVAL_S),
                report.metrics_every(metrics, settings.progress_interval_s),
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

        summary = report.summary(files.listing(), elapsed_s=time.monotonic() - started)
        code = report.finish(summary, files.summary, out)
        if metrics is not None:
            await metrics.finish(code)
        return code


def run_from_args(
    args: argparse.Namespace, settings: Settings, shard: Shard | None
) -> int:
    """`mira-batch run` with its flags: the files, the resume mode, the prices."""
    files = RunFiles.default(
        args.input,
        results=args.output,
        errors=args.errors,
        summary=args.summary,
        shard=shard,
    )
    mode: ResumeMode = (
        "fresh" if args.fresh else "retry_failed" if args.retry_failed else "resume"
    )
    prices = price_table(args.price)
    return asyncio.run(
        execute_run(settings, files, mode=mode, force=args.force, prices=prices)
    )
