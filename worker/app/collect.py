"""The commands over what runs leave behind: `collect` (the table, with a
progress bar), `report` (the HTML run report again) and `cache stats|prune`
(the answer cache runs share). None of them reaches the network: a run keeps
the prices it used in its summary, and each record says what its job cost."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from worker.collect.join import collect
from worker.config import Settings
from worker.domain.prices import PriceBook
from worker.domain.summary import RunSummary
from worker.errors import ConfigError
from worker.files.cache import AnswerCache
from worker.files.jobs import Rules, rules_for
from worker.files.jsonl import open_input
from worker.files.outputs import RunFiles
from worker.files.sources import open_source
from worker.logs import emit
from worker.page.report import write_report

log = logging.getLogger("worker.collect")


def _kept(summary: Path) -> RunSummary | None:
    """The summary the run left, if it left one that reads."""
    try:
        return RunSummary.from_bytes(summary.read_bytes())
    except (OSError, ValueError):
        return None


def run_prices(kept: RunSummary | None, overrides: Sequence[str] = ()) -> PriceBook:
    """The prices the run used (its summary keeps them), else the list prices;
    `--price` over either.

    Raises:
        ConfigError: an override is malformed.
    """
    book = PriceBook.build(None, overrides)  # a bad --price fails first
    run_book = None if kept is None else PriceBook.from_json(kept.cost.book)
    return book if run_book is None else run_book.overridden(overrides)


def run_rules(kept: RunSummary | None, settings: Settings) -> Rules:
    """How the run made its requests: the settings', with the run's own
    --json-schema when none is given here (its properties become columns).

    Raises:
        ConfigError: a schema file cannot be read, or is no JSON Schema.
    """
    schema = kept.files.get("json_schema") if kept is not None else None
    if settings.json_schema is None and schema is not None:
        settings = settings.model_copy(update={"json_schema": Path(schema)})
    return rules_for(settings)


def collect_table(
    files: RunFiles,
    to: Path | None,
    *,
    settings: Settings,
    kind: str | None = None,
    price_overrides: Sequence[str] = (),
    show_progress: bool = False,
) -> int:
    """Write one row per item of the run's input, in input order; return 0.

    Raises:
        ConfigError: a missing input, a bad --to or --price, a table that cannot
            be read, or foreign outputs.
    """
    to = to or Path(f"{files.stem}.collected.{kind or 'csv'}")
    kept = _kept(files.summary)
    prices = run_prices(kept, price_overrides)
    rules = run_rules(kept, settings)
    fh = open_input(files.input)
    try:
        source = open_source(fh, files.input, settings, rules)
        with Progress(
            "collect",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not show_progress,
            transient=True,
        ) as progress:
            task = progress.add_task("collect", total=source.expected() or None)
            report = collect(
                source,
                files.input,
                to,
                results=files.results,
                errors=files.errors,
                prices=prices,
                kind=kind,
                progress=lambda n: progress.advance(task, n) if show_progress else None,
            )
    finally:
        if files.input != "-":
            fh.close()
    counts = ", ".join(
        f"{n} {status}" for status, n in sorted(report.by_status.items())
    )
    emit(
        sys.stderr,
        f"{to}: {report.rows} rows ({counts or 'none'}); "
        f"cost {report.cost_rub:,.4f} RUB at {prices.source} prices",
    )
    return 0


def rewrite_report(files: RunFiles) -> int:
    """`mira-batch report INPUT`: the run report again, from the run's files.

    Raises:
        ConfigError: no summary to draw it from, or the page cannot be written.
    """
    try:
        summary = RunSummary.from_bytes(files.summary.read_bytes())
    except (OSError, ValueError) as exc:
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


def cache_stats(path: Path, *, prune_older_than_days: float | None = None) -> int:
    """`mira-batch cache stats PATH` (or `prune`, first forgetting old answers).

    Raises:
        ConfigError: the cache cannot be opened, or does not exist.
    """
    if not path.is_file():
        raise ConfigError(f"no cache at {path}")
    with AnswerCache(path) as cache:
        if prune_older_than_days is not None:
            removed = cache.prune(prune_older_than_days)
            emit(
                sys.stdout,
                f"{path}: removed {removed} answers older than "
                f"{prune_older_than_days:g} days",
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
        f"{path}: {stats.answers} answers, {stats.bytes:,} bytes; "
        f"oldest {when[0]}, newest {when[1]}",
    )
    return 0
