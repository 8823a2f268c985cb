"""The `mira-batch` command: arguments, logging, exit codes; nothing else exits."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence

from worker.cli.adapters import (
    cache_command,
    collect_command,
    demo_command,
    report_command,
    simulate_command,
    validate_command,
)
from worker.cli.parser import build_parser
from worker.cli.run import run_command
from worker.config import LOG_FORMATS, LOG_LEVELS
from worker.errors import ConfigError
from worker.logs import quiet_standard_streams, setup_logging

log = logging.getLogger("worker")


EXIT_USAGE = 2
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run_command,
    "validate": validate_command,
    "collect": collect_command,
    "report": report_command,
    "cache": cache_command,
    "simulate": simulate_command,
    "demo": demo_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mira-batch` and `python -m worker`; returns the exit code
    (which output that went away never changes)."""
    with quiet_standard_streams():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
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
        return COMMANDS[args.command](args)
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
