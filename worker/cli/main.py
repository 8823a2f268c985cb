"""The `mira-batch` command: arguments, logging, exit codes; nothing else exits."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from worker.cli.parser import build_parser
from worker.config import LOG_FORMATS, LOG_LEVELS
from worker.errors import ConfigError
from worker.logs import setup_logging

log = logging.getLogger("worker")


EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mira-batch` and `python -m worker`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Until the settings are validated, log as the flag or environment asks, so a
    # configuration error is already in the chosen format.
    setup_logging(
        _early_choice(
            args,
            "log_level",
            "MIRA_LOG_LEVEL",
            LOG_LEVELS,
            "info",
        ),
        _early_choice(args, "log_format", "MIRA_LOG_FORMAT", LOG_FORMATS, "text"),
    )
    try:
        if args.command == "run":
            from worker.cli.run import run_command

            return run_command(args)
        if args.command == "validate":
            from worker.app.plan import run_validate

            return run_validate(args)
        if args.command in ("collect", "report", "cache"):
            from worker.app.collect import run_cache, run_collect, run_report

            command = {"collect": run_collect, "report": run_report}
            return command.get(args.command, run_cache)(args)
        if args.command == "simulate":
            from worker.sim.command import run_simulate

            return run_simulate(args)
        from worker.app.demo import run_demo

        return run_demo(args.output_dir)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:
        # A bug: say so in the chosen log format, with the traceback.
        log.exception("internal error; please report it with this traceback")
        return 1


def _early_choice(
    args: argparse.Namespace,
    name: str,
    env: str,
    allowed: tuple[str, ...],
    default: str,
) -> str:
    value = getattr(args, name, None) or os.environ.get(env, default)
    value = value.lower()
    return value if value in allowed else default
