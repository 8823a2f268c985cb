"""`mira-batch collect` from the command line: defaults, a progress bar, a report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from worker.collect.join import collect
from worker.config import load_settings
from worker.files.outputs import RunFiles
from worker.logs import emit, setup_logging
from worker.report.cost import price_table

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
            prices=price_table(args.price),
            default_model=settings.model,
            progress=lambda n: progress.advance(task, n) if show else None,
        )
    counts = ", ".join(
        f"{n} {status}" for status, n in sorted(report.by_status.items())
    )
    emit(
        sys.stderr,
        f"{to}: {report.rows} rows ({counts or 'none'}); "
        f"cost {report.cost_rub:,.4f} RUB",
    )
    return 0
