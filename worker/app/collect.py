"""The commands over what runs leave behind: `collect` (defaults, a progress bar,
a report), `report` (the HTML run report again) and `cache stats|prune` (the
answer cache runs share)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from worker.api.account import read_prices
from worker.collect.join import collect
from worker.config import load_settings
from worker.errors import ConfigError
from worker.files.cache import AnswerCache
from worker.files.outputs import RunFiles
from worker.logs import emit, setup_logging
from worker.page.report import write_report

log = logging.getLogger("worker.collect")


def run_collect(args: argparse.Namespace) -> int:
    """Write the table; return 0.

    Raises:
        ConfigError: a missing input, a bad --to or --price, or foreign outputs.
    """
    settings = load_settings(model=args.model)
    setup_logging(settings.log_level, settings.log_format)
    defaults = RunFiles.default(args.input)
    to = args.to or Path(f"{defaults.stem}.collected.csv")
    source = Path(args.input)
    prices = asyncio.run(read_prices(settings, args.price))
    show = sys.stderr.isatty() and settings.log_format == "text"
    size = source.stat().st_size if source.is_file() else 0
    with Progress(
        "collect",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=True,
    ) as progress:
        task = progress.add_task("collect", total=size)
        report = collect(
            source,
            to,
            results=args.results or defaults.results,
            errors=args.errors or defaults.errors,
            prices=prices,
            default_model=settings.model,
            progress=lambda n: progress.advance(task, n) if show else None,
        )
    counts = ", ".join(
        f"{n} {status}" for status, n in sorted(report.by_status.items())
    )
    emit(
        sys.stderr,
        f"{to}: {report.rows} rows ({counts or 'none'}); "
        f"cost {report.cost_rub:,.4f} RUB at {prices.source} prices",
    )
    return 0


def run_report(args: argparse.Namespace) -> int:
    """`mira-batch report INPUT`: the run report again, from the run's files.

    Raises:
        ConfigError: no summary to draw it from, or the page cannot be written.
    """
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    files = RunFiles.default(
        args.input,
        results=args.results,
        errors=args.errors,
        summary=args.summary,
        report=args.to or True,
    )
    try:
        summary = orjson.loads(files.summary.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read the summary {files.summary} ({exc}): run the batch first, "
            "or name its summary with --summary"
        ) from None
    try:
        written = write_report(files, summary)
    except OSError as exc:
        raise ConfigError(f"cannot write the report {files.report}: {exc}") from None
    emit(sys.stderr, f"{written}: the run report")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    """`mira-batch cache stats PATH` or `cache prune PATH --older-than DAYS`.

    Raises:
        ConfigError: the cache cannot be opened, or does not exist.
    """
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    if not args.path.is_file():
        raise ConfigError(f"no cache at {args.path}")
    with AnswerCache(args.path) as cache:
        if args.action == "prune":
            removed = cache.prune(args.older_than)
            emit(
                sys.stdout,
                f"{args.path}: removed {removed} answers older than "
                f"{args.older_than:g} days",
            )
        stats = cache.stats()
    when = [
        "never"
        if t is None
        else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
        for t in (stats.oldest, stats.newest)
    ]
    emit(
        sys.stdout,
        f"{args.path}: {stats.answers} answers, {stats.bytes:,} bytes; "
        f"oldest {when[0]}, newest {when[1]}",
    )
    return 0
