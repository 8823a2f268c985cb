"""Each command's adapter: its parsed flags turned into typed values for the
application, which never sees argparse (`run` has its own, cli/run.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.cli.flags import COLLECT_SETTINGS, RUN_FLAGS, VALIDATE_SETTINGS
from worker.config import Settings, load_settings
from worker.files.outputs import RunFiles
from worker.logs import setup_logging

# The settings each command reads from its flags (the rest: environment, .env).


def _settings(args: argparse.Namespace, fields: tuple[str, ...] = ()) -> Settings:
    """The settings from these commands' flags, the environment and `.env`;
    logging set up as they say.

    Raises:
        ConfigError: a value is out of its bounds.
    """
    known = {flag.field for flag in RUN_FLAGS}
    settings = load_settings(
        **{name: getattr(args, name, None) for name in fields if name in known}
    )
    setup_logging(settings.log_level, settings.log_format)
    return settings


def validate_command(args: argparse.Namespace) -> int:
    """`mira-batch validate INPUT [--online] [--format] [--price]`."""
    from worker.app.plan import validate

    return validate(
        _settings(args, VALIDATE_SETTINGS),
        args.input,
        online=args.online,
        as_json=args.format == "json",
        price_overrides=args.price,
        show=args.show,
    )


def collect_command(args: argparse.Namespace) -> int:
    """`mira-batch collect INPUT [--to PATH] [--results] [--errors] [--summary]`."""
    from worker.app.collect import collect_table

    settings = _settings(args, COLLECT_SETTINGS)
    files = RunFiles.default(
        args.input, results=args.results, errors=args.errors, summary=args.summary
    )
    return collect_table(
        files,
        args.to,
        settings=settings,
        kind=args.format,
        price_overrides=args.price,
        show_progress=sys.stderr.isatty() and settings.log_format == "text",
    )


def report_command(args: argparse.Namespace) -> int:
    """`mira-batch report INPUT [--to PATH] [--results] [--errors] [--summary]`."""
    from worker.app.collect import rewrite_report

    _settings(args)
    files = RunFiles.default(
        args.input,
        results=args.results,
        errors=args.errors,
        summary=args.summary,
        report=args.to or True,
    )
    return rewrite_report(files)


def cache_command(args: argparse.Namespace) -> int:
    """`mira-batch cache stats PATH` or `cache prune PATH --older-than DAYS`."""
    from worker.app.collect import cache_stats

    _settings(args)
    path: Path = args.path
    days = args.older_than if args.action == "prune" else None
    return cache_stats(path, prune_older_than_days=days)


def demo_command(args: argparse.Namespace) -> int:
    """`mira-batch demo [--output-dir DIR]`."""
    from worker.app.demo import run_demo

    return run_demo(args.output_dir)


def simulate_command(args: argparse.Namespace) -> int:
    """`mira-batch simulate [options]`: the simulator's own command."""
    from worker.sim.command import run_simulate

    return run_simulate(args)
