"""The live display's layout: whole fields, by priority, within the width."""

from __future__ import annotations

import pytest

from worker.report.display import SEPARATOR, Snapshot, layout

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
