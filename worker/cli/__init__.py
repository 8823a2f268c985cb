"""The `mira-batch` command line: its parsers, its flags, and `main`, which alone
turns outcomes into exit codes."""

from worker.cli.main import main
from worker.cli.parser import build_parser
from worker.cli.run import tune_gc_for_throughput

__all__ = ["build_parser", "main", "tune_gc_for_throughput"]
