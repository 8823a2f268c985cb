"""`mira-batch run`: its flags into settings, files and a resume mode."""

from __future__ import annotations

import argparse
import asyncio
import gc

from worker.cli.flags import settings_from_args, shard_for
from worker.errors import ConfigError
from worker.logs import setup_logging

GC_GEN0_THRESHOLD = 50_000


def run_command(args: argparse.Namespace) -> int:
    """`mira-batch run` with its flags: the files, the resume mode, the prices."""
    from worker.app.run import ResumeMode, execute_run
    from worker.domain.prices import PriceBook
    from worker.files.outputs import RunFiles

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    if args.force and not args.fresh:
        raise ConfigError("--force only goes with --fresh")
    PriceBook.build(None, args.price)  # a bad --price fails before anything else
    files = RunFiles.default(
        args.input,
        results=args.output,
        errors=args.errors,
        summary=args.summary,
        shard=shard_for(args, settings),
        report=False if args.no_report else args.report or True,
    )
    mode: ResumeMode = (
        "fresh" if args.fresh else "retry_failed" if args.retry_failed else "resume"
    )
    tune_gc_for_throughput()
    return asyncio.run(
        execute_run(
            settings, files, mode=mode, force=args.force, price_overrides=args.price
        )
    )


def tune_gc_for_throughput() -> None:
    """Freeze start-up objects and collect the young generation less often.

    Profiling a lean aiohttp client here showed the collector taking ~12% of the
    CPU, walking long-lived import-time objects again and again; the hot path
    makes few reference cycles, so rarer collections cost little memory. No
    collection before the freeze: at this point it found 15 unreachable objects
    among 39,000 and took 15 to 30 ms of every start.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)
