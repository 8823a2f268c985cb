"""The `run` command's flags, built from the settings model.

Each flag's help text and default come from its `Settings` field, so no default is
written twice. argparse is kept (rather than pydantic-settings' own CLI) because
the contract fixes flag names such as `--timeout` and `-o` that differ from the
field names, and `run` shares its parser with three other subcommands.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from worker.config import Settings, load_settings
from worker.domain.job import Shard
from worker.domain.prices import PRICE_HELP
from worker.errors import ConfigError


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number, 0 or more."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def parse_shard(text: str) -> Shard:
    """`K/N` with 0 <= K < N."""
    index_text, sep, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        index = count = -1
    if not sep or count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(
            f"--shard {text!r}: expected K/N with 0 <= K < N"
        )
    return Shard(index, count)


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line flag for one Settings field."""

    field: str
    name: str
    group: str
    parse: Callable[[str], object] | None = None  # None: a switch, or choices


RUN_FLAGS = (
    Flag("base_url", "--base-url", "API", str),
    Flag("model", "--model", "API", str),
    Flag("allow_insecure_http", "--allow-insecure-http", "API"),
    Flag("ca_bundle", "--ca-bundle", "API", Path),
    Flag("max_response_bytes", "--max-response-bytes", "API", int),
    Flag("stream", "--stream", "API"),
    Flag("system_as_user", "--system-as-user", "API"),
    Flag("dedupe", "--dedupe", "API"),
    Flag("redo_changed", "--redo-changed", "API"),
    Flag("cache", "--cache", "API", Path),
    Flag("template", "--template", "tables", Path),
    Flag("input_format", "--input-format", "tables"),
    Flag("id_column", "--id-column", "tables", str),
    Flag("max_tokens", "--max-tokens", "API", int),
    Flag("temperature", "--temperature", "API", float),
    Flag("json_schema", "--json-schema", "answers", Path),
    Flag("max_reasks", "--max-reasks", "answers", int),
    Flag("on_truncated", "--on-truncated", "answers"),
    Flag("concurrency", "--concurrency", "speed and retries", int),
    Flag("max_attempts", "--max-attempts", "speed and retries", int),
    Flag("request_timeout_s", "--timeout", "speed and retries", positive_float),
    Flag("rpm", "--rpm", "speed and retries", positive_float),
    Flag("tpm", "--tpm", "speed and retries", positive_float),
    Flag("slot_expiry_s", "--slot-expiry-s", "speed and retries", positive_float),
    Flag("max_retry_after_s", "--max-retry-after", "budgets", non_negative_float),
    Flag("deadline_s", "--deadline", "budgets", positive_float),
    Flag("token_budget", "--token-budget", "budgets", int),
    Flag("max_cost_rub", "--max-cost", "budgets", positive_float),
    Flag("until_done", "--until-done", "budgets"),
    Flag("daily_reserve", "--daily-reserve", "budgets", int),
    Flag("max_consecutive_failures", "--max-consecutive-failures", "budgets", int),
    Flag("shutdown_grace_s", "--shutdown-grace", "budgets", non_negative_float),
    Flag("log_level", "--log-level", "output"),
    Flag("log_format", "--log-format", "output"),
    Flag("progress", "--progress", "output"),
    Flag("progress_interval_s", "--progress-interval", "output", positive_float),
    Flag("metrics_file", "--metrics-file", "output", Path),
    Flag("metrics_push", "--metrics-push", "output", str),
)


# A table is read as run reads it: its template, format, ids and parameters.
TABLE_SETTINGS = (
    "template",
    "input_format",
    "id_column",
    "max_tokens",
    "temperature",
)
VALIDATE_SETTINGS = (
    "model",
    "system_as_user",
    "dedupe",
    "base_url",
    "ca_bundle",
    "json_schema",
    "daily_reserve",
    *TABLE_SETTINGS,
)
COLLECT_SETTINGS = ("model", "json_schema", *TABLE_SETTINGS)


def _default_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_flag(parser: argparse._ActionsContainer, flag: Flag) -> None:
    """Add one settings flag; its default stays None so the environment can win."""
    info = Settings.model_fields[flag.field]
    help_text = f"{info.description} (default: {_default_text(info.default)})"
    if flag.parse is not None:
        parser.add_argument(flag.name, dest=flag.field, type=flag.parse, help=help_text)
    elif info.annotation is bool:
        parser.add_argument(
            flag.name,
            dest=flag.field,
            action="store_true",
            default=None,
            help=help_text,
        )
    else:
        choices = get_args(info.annotation)
        if type(None) in choices:  # an optional Literal: the Literal's values
            choices = get_args(choices[0])
        parser.add_argument(flag.name, dest=flag.field, choices=choices, help=help_text)


def add_price_flag(parser: argparse._ActionsContainer, purpose: str = "") -> None:
    """`--price MODEL=IN,OUT`, repeatable: run, validate and collect share it."""
    parser.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=IN,OUT",
        help=PRICE_HELP + purpose,
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every option of `run`: the settings' flags, then files and resume."""
    p.add_argument(
        "input", metavar="INPUT", help="job file (JSONL); - reads standard input"
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in RUN_FLAGS:
        if flag.group not in groups:
            groups[flag.group] = p.add_argument_group(flag.group)
        add_flag(groups[flag.group], flag)
    _add_files_and_resume(p.add_argument_group("files and resume"))


def _add_files_and_resume(g: argparse._ArgumentGroup) -> None:
    """Where a run writes, how it resumes, its prices, its report, its shard."""
    for names, what in (
        (("-o", "--output"), "results"),
        (("--errors",), "errors"),
        (("--summary",), "summary"),
    ):
        suffix = "summary.json" if what == "summary" else f"{what}.jsonl"
        g.add_argument(
            *names, type=Path, help=f"{what} file (default: <input stem>.{suffix})"
        )
    mode = g.add_mutually_exclusive_group()
    mode.add_argument(
        "--retry-failed",
        action="store_true",
        help="put the jobs of the errors file back into play",
    )
    mode.add_argument(
        "--fresh",
        action="store_true",
        help="start over, ignoring earlier output (needs --force if it is not empty)",
    )
    g.add_argument(
        "--force", action="store_true", help="let --fresh discard non-empty output"
    )
    report = g.add_mutually_exclusive_group()
    report.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="the HTML run report: charts over time, the slowest and the failed "
        "jobs (default: <input stem>.report.html)",
    )
    report.add_argument(
        "--no-report", action="store_true", help="write no HTML run report"
    )
    add_price_flag(g, "; for the summary's cost")
    g.add_argument(
        "--shard",
        type=parse_shard,
        help="run shard K of N (default: from JOB_COMPLETION_INDEX, MIRA_SHARD_COUNT)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the flags given, then the environment, `.env` and defaults.

    Raises:
        ConfigError: a value is out of its bounds.
    """
    return load_settings(
        **{flag.field: getattr(args, flag.field) for flag in RUN_FLAGS}
    )


def shard_for(args: argparse.Namespace, settings: Settings) -> Shard | None:
    """--shard, else JOB_COMPLETION_INDEX of MIRA_SHARD_COUNT (an Indexed Job).

    Raises:
        ConfigError: MIRA_SHARD_COUNT without a fitting JOB_COMPLETION_INDEX.
    """
    if args.shard is not None:
        shard: Shard = args.shard
        return shard
    count = settings.shard_count
    if count is None:
        return None
    index = os.environ.get("JOB_COMPLETION_INDEX")
    try:
        return parse_shard(f"{index if index is not None else ''}/{count}")
    except argparse.ArgumentTypeError:
        raise ConfigError(
            f"MIRA_SHARD_COUNT={count} needs JOB_COMPLETION_INDEX in 0..{count}-1 "
            f"(got {index!r})"
        ) from None
