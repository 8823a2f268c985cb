"""`mira-batch run`: prepare the files, build the run, drive it, then write and
show what it left: the summary, the report page, the last metrics."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from worker.api.account import read_prices
from worker.api.client import Client, make_client
from worker.api.keys import KeyRing
from worker.app.flow import Time
from worker.app.prepare import ResumeMode, prepared
from worker.app.wiring import Run, build_run
from worker.config import Settings
from worker.domain.prices import PriceBook
from worker.domain.summary import RunSummary
from worker.errors import ConfigError
from worker.exits import StopReason
from worker.files.outputs import RunFiles, atomic_write
from worker.files.resume import set_aside_redone
from worker.logs import scrub_bytes
from worker.page.report import write_report
from worker.report.summary import Ending, show_summary, summarize
from worker.run.signals import handle_signals
from worker.run.stop import StopController

__all__ = ["ResumeMode", "execute_run"]

log = logging.getLogger("worker.run")

FSYNC_INTERVAL_S = 1.0
# The first request waits at most this long for Mira's prices: a pricing route
# that answers as fast as Mira's does prices every answer exactly, and one that
# never answers delays nothing noticeable (answers priced before it are priced
# again once it does).
PRICES_HEAD_START_S = 0.05


async def execute_run(
    settings: Settings,
    files: RunFiles,
    *,
    mode: ResumeMode = "resume",
    force: bool = False,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    client_factory: Callable[[Settings, KeyRing], Client] = make_client,
    prices: PriceBook | None = None,
    price_overrides: Sequence[str] = (),
) -> int:
    """Run one batch and return the process exit code, its cost at `prices`
    (by default those Mira's pricing route gives, once it has answered; until
    then, and if it never does, its list prices).

    Signals are handled from the first moment: a stop asked for while the
    files are prepared ends the run before its first request, with a summary.

    Raises:
        ConfigError: bad settings, key, input or output files; nothing was sent.
    """
    out = out or sys.stderr
    stop = StopController()
    with (
        handle_signals(stop),
        prepared(settings, files, mode=mode, force=force) as ready,
    ):
        keys = KeyRing(ready.api_key, file=_rotatable(settings))
        book = prices or PriceBook.build(None, price_overrides)
        run = build_run(
            settings,
            files,
            ready,
            stop=stop,
            keys=keys,
            client=client_factory(settings, keys),
            prices=book,
            time=Time(clock, sleep, wall),
        )
        started = time.monotonic()
        async with _charged_prices(run, settings, price_overrides, asked=prices):
            await _drive(run, files, out)
        summary = _summary(run, files, elapsed_s=time.monotonic() - started)
        return await _finish(run, summary, files, out)


def _rotatable(settings: Settings) -> Path | None:
    """The key file a 401 reads again; None for a key that cannot change."""
    return settings.api_key_file if settings.api_key is None else None


@asynccontextmanager
async def _charged_prices(
    run: Run, settings: Settings, overrides: Sequence[str], *, asked: PriceBook | None
) -> AsyncIterator[None]:
    """Read Mira's pricing route beside the run, never before its first
    request; answers from then on are priced at what it says."""
    if asked is not None:
        yield
        return

    tally = run.tally
    tally.prices_pending()

    async def read() -> None:
        book = None
        try:
            book = await read_prices(settings, overrides)
        finally:  # answered, failed or cancelled: the prices are settled
            tally.priced(book)

    task = asyncio.create_task(read(), name="mira-batch pricing")
    try:
        await asyncio.wait([task], timeout=PRICES_HEAD_START_S)
        yield
    finally:
        if not task.done():
            task.cancel()
            log.info(
                "the pricing route did not answer before the run ended: the cost "
                "is at list prices"
            )
        await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("the pricing route could not be read: %s", error)


async def _drive(run: Run, files: RunFiles, out: TextIO) -> None:
    """The pipeline over the input, with the writer syncing, the metrics, the
    timeline and the progress display around it; then one current record per
    id again when jobs were sent again."""
    settings, live = run.settings, run.live
    async with (
        run.writer.syncing(FSYNC_INTERVAL_S),
        live.metrics_every(settings.progress_interval_s),
        live.recording(),
        run.client,
        live.progress(out),
    ):
        reading = await run.pipeline.run()
    if reading.redone:  # under the run's lock still
        set_aside_redone(files.results, files.errors, reading.redone)


def _summary(run: Run, files: RunFiles, *, elapsed_s: float) -> RunSummary:
    stop, live, schema = run.stop, run.live, run.settings.json_schema
    return summarize(
        run.tally.stats,
        ending=Ending(stop.reason, stop.message, stop.at, stop.abandoned),
        elapsed_s=elapsed_s,
        # The schema file too: collect makes its properties columns.
        files=files.listing() | ({"json_schema": str(schema)} if schema else {}),
        concurrency=live.concurrency(),
        learned=live.learned(),
        cost=live.cost(),
        timeline=live.timeline(),
        waits=live.waits(),
        daily_messages_left=live.daily_left(),
        key_rotations=run.keys.rotations,
    )


async def _finish(run: Run, summary: RunSummary, files: RunFiles, out: TextIO) -> int:
    """Write the summary file and show it, then the report page and the last
    metrics; return the exit code (7 when the summary could not be written; a
    report that cannot be written is only a warning)."""
    code = summary.exit_code
    try:
        atomic_write(files.summary, scrub_bytes(summary.to_bytes()))
    except OSError as exc:
        log.error("could not write the summary %s: %s", files.summary, exc.strerror)
        code = StopReason.OUTPUT_FAILED.exit_code
        summary = summary.model_copy(update={"exit_code": code})
    show_summary(summary, out, log_format=run.settings.log_format)
    try:
        write_report(files, summary)
    except (OSError, ConfigError) as exc:
        log.warning("could not write the report %s: %s", files.report, exc)
    await run.live.finish_metrics(code)
    return code
