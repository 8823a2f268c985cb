"""The live display's layout: whole fields, by priority, within the width."""

from __future__ import annotations

import io
import logging
import re

import pytest

from tests.fakes import FakeClock
from tests.helpers import GivenSettings
from worker.flow.throttle import FlowLimits, Throttle
from worker.logs import setup_logging
from worker.report.display import SEPARATOR, Snapshot, layout
from worker.report.progress import ProgressReporter
from worker.report.render import fit_phrases
from worker.report.stats import RunStats

EXTRAS = ["ok 39 failed 1", "retrying 2", "in flight 3/3", "12,345 tokens", "0.42 RUB"]
SNAP = Snapshot(done=40, total=120, estimated=True, eta_s=754, rate=3.2, extras=EXTRAS)


@pytest.mark.parametrize("width", [66, 80, 100, 120, 160, 200])
def test_lines_fit_and_keep_whole_fields_in_priority_order(width: int) -> None:
    lines = layout(width, SNAP)
    assert 1 <= len(lines) <= 2
    assert all(len(line) <= width for line in lines)
    assert "done 40/120~" in lines[0]
    assert "ETA 12:34" in lines[0]
    assert "3.2 req/s" in lines[0]
    shown = [f for line in lines for f in line.split(SEPARATOR)][1:]
    assert all(field in EXTRAS for field in shown)  # never a cut field
    assert shown == [f for f in EXTRAS if f in shown]  # most important first


def test_a_wide_terminal_shows_everything_on_one_line() -> None:
    (line,) = layout(200, SNAP)
    assert line.startswith("━" * 13)  # a third of 40 cells: 40 of 120 done
    assert all(field in line for field in EXTRAS)
    assert " 33%" in line


def test_eighty_columns_take_two_lines_and_lose_nothing_essential() -> None:
    first, second = layout(80, SNAP)
    assert first.startswith("━")
    assert "retrying 2" in first + second
    assert "0.42 RUB" in first + second


def test_a_very_narrow_terminal_wraps_the_essentials_at_spaces() -> None:
    lines = layout(30, SNAP)
    assert all(len(line) <= 30 for line in lines)
    assert " ".join(lines).split() == (
        ["done", "40/120~", "33%", "ETA", "12:34", "3.2", "req/s"]
    )


class Terminal(io.StringIO):
    """A terminal, as far as rich and the reporter can tell."""

    def isatty(self) -> bool:
        return True


async def test_log_lines_print_above_the_live_bar_never_into_it() -> None:
    out = Terminal()
    setup_logging("info", "text", stream=out)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    settings = GivenSettings(progress="bar", progress_interval_s=60)
    clock = FakeClock()
    throttle = Throttle(FlowLimits(concurrency=4), clock=clock, sleep=clock.sleep)
    reporter = ProgressReporter(settings, RunStats(), throttle, out)
    async with reporter:
        assert handler.stream is not out  # through the live console
        logging.getLogger("worker.run").info("429 (other): pausing all requests")
    assert handler.stream is out
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    (line,) = [line for line in text.splitlines() if "pausing" in line]
    assert line.endswith("INFO    429 (other): pausing all requests"), line
    assert line[:4].isdigit()  # the log line starts its own line


def test_the_summary_breaks_between_phrases_to_fit_the_terminal() -> None:
    summary_line = "50 total: 50 succeeded, 0 failed (0 invalid lines), 0 done before"
    lines = fit_phrases(summary_line, 40)
    assert len(lines) > 1
    assert all(len(line) <= 40 for line in lines)
    assert all(line.endswith(",") for line in lines[:-1])  # between phrases
    assert " ".join(lines) == summary_line
    assert fit_phrases("one two three four five six", 9) == [
        "one two",
        "three",
        "four five",
        "six",
    ]
    assert fit_phrases("a-very-long-path/without/spaces.jsonl", 10) == [
        "a-very-long-path/without/spaces.jsonl"
    ]
    assert fit_phrases(summary_line, None) == [summary_line]


def test_a_pause_every_request_waits_for_is_shown() -> None:
    clock = FakeClock()
    throttle = Throttle(FlowLimits(concurrency=4), clock=clock, sleep=clock.sleep)
    reporter = ProgressReporter(
        GivenSettings(progress="log"), RunStats(), throttle, io.StringIO()
    )
    assert "paused" not in reporter.status_line()
    throttle.gate.defer(42)
    assert reporter.status_line().endswith("| paused 42 s")
