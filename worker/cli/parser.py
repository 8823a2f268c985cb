"""The command line's shape: `mira-batch`, its `run`, `simulate` and `demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from worker import __version__
from worker.cli.commands import add_after_run_commands
from worker.cli.flags import add_run_options

EPILOG = """\
The API key is read from MIRA_API_KEY or MIRA_API_KEY_FILE (never from the command
line). Every option also reads MIRA_<NAME> from the environment or a .env file in the
working directory; a flag wins over both. HTTPS_PROXY, HTTP_PROXY and NO_PROXY (either
case) and SSL_CERT_FILE are honoured; https goes through a proxy in a CONNECT tunnel.

exit codes: 0 all jobs succeeded; 1 some jobs failed or lines were invalid (see the
errors file); 2 usage, configuration or input error (nothing sent); 3 key rejected
(401); 4 payment required (402); 5 stopped by a budget (Mira's daily cap, which
resets at 00:00 UTC, or monthly budget; a Retry-After over --max-retry-after;
--deadline, --token-budget, --max-cost); 6 systematic failure; 130/143
SIGINT/SIGTERM; 7 an output file could not be written. 3, 4, 5, 6, 7, 130 and 143
are resumable: run the same command again.
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    from worker.sim.command import add_simulate_options

    parser = argparse.ArgumentParser(
        prog="mira-batch",
        description="Push JSONL prompt jobs through the Mira chat-completions API: "
        "concurrent, retried, resumable, and stopped at once when the key is rejected.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"mira-batch {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="process a job file",
        description="Process a job file; resumes by default.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(run)
    add_after_run_commands(sub)
    sim = sub.add_parser(
        "simulate",
        help="run the bundled Mira-compatible simulator until stopped",
        description="Serve a Mira-compatible API with seeded fault injection.",
    )
    add_simulate_options(sim)
    demo = sub.add_parser(
        "demo",
        help="run the example jobs against the simulator, end to end",
        description="Start the simulator on a free loopback port with a generated "
        "key and a few transient faults, run jobs/example.jsonl through the real "
        "pipeline into ./demo-output/, and print the summary. Needs no key and no "
        "network.",
    )
    demo.add_argument(
        "--output-dir",
        type=Path,
        default=Path("demo-output"),
        help="(default: ./demo-output)",
    )
    return parser
