"""The parsers of the commands over a job file and what runs leave: `validate`,
`collect`, `report` and `cache`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Protocol

from worker.cli.flags import (
    COLLECT_SETTINGS,
    RUN_FLAGS,
    VALIDATE_SETTINGS,
    add_flag,
    add_price_flag,
)


class Subparsers(Protocol):
    """What argparse's add_subparsers() returns, as far as the commands use it."""

    def add_parser(self, name: str, **_kwargs: Any) -> argparse.ArgumentParser: ...


def add_after_run_commands(sub: Subparsers) -> None:
    """validate, collect, report and cache."""
    _add_validate(sub)
    _add_collect(sub)
    _add_report(sub)
    _add_cache(sub)


def _add_settings(parser: argparse.ArgumentParser, *fields: str) -> None:
    """The run's flags for these settings fields."""
    for field in fields:
        add_flag(parser, next(flag for flag in RUN_FLAGS if flag.field == field))


def _add_run_files(parser: argparse.ArgumentParser, *names: str) -> None:
    """--results, --errors, --summary: a run's files, when not the defaults."""
    defaults = {
        "results": "results.jsonl",
        "errors": "errors.jsonl",
        "summary": "summary.json",
    }
    for name in names:
        parser.add_argument(
            f"--{name}",
            type=Path,
            help=f"{name} file (default: <stem>.{defaults[name]})",
        )


def _add_collect(sub: Subparsers) -> None:
    """The `collect` command's parser."""
    col = sub.add_parser(
        "collect",
        help="one row per input line, in input order, with its answer or error",
        description="Join the input with its results and errors files into a table: "
        "one row per non-blank line, in input order, with the content, tokens, "
        "cost, error and metadata; status is succeeded, failed, invalid or "
        "pending (not done yet). Offline: each record says what its job cost, "
        "and the run's summary keeps the prices it used. Exit 2 for a missing "
        "input, or outputs that belong to another input.",
    )
    col.add_argument("input", metavar="INPUT", help="the job file that was run")
    col.add_argument(
        "--to",
        type=Path,
        help="the table; .csv, .jsonl or .parquet (default: <stem>.collected.csv, "
        "or the --format's extension)",
    )
    col.add_argument(
        "-f",
        "--format",
        choices=("csv", "jsonl", "parquet"),
        help="the table's format (default: from --to's extension, else csv)",
    )
    _add_run_files(col, "results", "errors", "summary")
    _add_settings(col, *COLLECT_SETTINGS)
    for name in ("--base-url", "--ca-bundle"):  # once for prices; kept for scripts
        col.add_argument(name, help=argparse.SUPPRESS)
    add_price_flag(
        col,
        "; only for records of earlier versions: a record says what its job "
        "cost, and the run's summary keeps the prices it used",
    )


def _add_validate(sub: Subparsers) -> None:
    """The `validate` command's parser."""
    val = sub.add_parser(
        "validate",
        help="check a job file, estimate its cost, plan it against the account",
        description="Parse and check every line as run would, and estimate the "
        "batch's tokens and cost; send no completion. With --online, also plan it "
        "against the account (each account route is optional: one the server "
        "lacks or refuses is a note). Exit 0 when every line is a valid job, 1 "
        "when some are not, 2 when the file cannot be read or the key is missing.",
    )
    val.add_argument(
        "input", metavar="INPUT", help="job file (JSONL); - reads standard input"
    )
    val.add_argument(
        "--online",
        action="store_true",
        help="also read the account with the run's key (plan, today's messages, "
        "balance, prices; never a completion) and plan the batch against it: "
        "the messages it needs, the days at the daily cap, its cost against the "
        "balance",
    )
    val.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people, or one JSON object (default: text)",
    )
    _add_settings(val, *VALIDATE_SETTINGS)
    val.add_argument(
        "--show",
        type=int,
        metavar="N",
        help="print the prompts of the first N jobs, as they will be sent "
        "(default: a table's first, none of a job file)",
    )
    add_price_flag(val)


def _add_report(sub: Subparsers) -> None:
    """The `report` command's parser."""
    rep = sub.add_parser(
        "report",
        help="write the HTML run report again from a run's files",
        description="Write the run report (one self-contained HTML file that works "
        "offline: throughput, in flight against the learned cap, 429s and retries, "
        "latency and cost over time; the slowest and the failed jobs) from the "
        "summary, results and errors files. A run writes it itself at its end. "
        "Exit 2 when there is no summary yet.",
    )
    rep.add_argument("input", metavar="INPUT", help="the job file that was run")
    rep.add_argument("--to", type=Path, help="the page (default: <stem>.report.html)")
    _add_run_files(rep, "results", "errors", "summary")


def _add_cache(sub: Subparsers) -> None:
    """The `cache` command's parser."""
    cache = sub.add_parser(
        "cache",
        help="look after an answer cache (--cache): stats, or prune old answers",
        description="Show what an answer cache holds, or forget answers older than "
        "some days. Safe while runs use the cache.",
    )
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = actions.add_parser("stats", help="answers, size, oldest and newest")
    stats.add_argument("path", type=Path, metavar="PATH", help="the cache file")
    prune = actions.add_parser("prune", help="forget answers older than DAYS")
    prune.add_argument("path", type=Path, metavar="PATH", help="the cache file")
    prune.add_argument(
        "--older-than",
        type=float,
        required=True,
        metavar="DAYS",
        help="answers stored more than this many days ago go",
    )
