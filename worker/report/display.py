"""The live display's layout: whole fields, in priority order, fitted to the width.

The essentials (the bar, done/total, percent, ETA, rate) always come first, on the
first line; the rest (ok/failed, retrying, in flight/limit, tokens, cost) follow on
that line while they fit, then on a second line, and what fits on neither is left
out. A field is never cut, so no line ends mid-word.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

SEPARATOR = " · "
MIN_BAR = 10
MAX_BAR = 40


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the display shows, already formatted where it is text."""

    done: int
    total: int | None
    estimated: bool  # total from the line count, until the input is read
    eta_s: float | None
    rate: float
    extras: Sequence[str]  # the rest, most important first


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"ETA {hours}h{minutes:02d}m"
    return f"ETA {minutes}:{seconds:02d}"


def _bar(width: int, fraction: float | None) -> str:
    if fraction is None:
        return "─" * width
    filled = round(width * min(1.0, max(0.0, fraction)))
    return "━" * filled + "─" * (width - filled)


def layout(width: int, snap: Snapshot) -> list[str]:
    """The display's lines for a terminal `width` columns wide."""
    total = (
        "?" if snap.total is None else f"{snap.total}{'~' if snap.estimated else ''}"
    )
    fraction = snap.done / snap.total if snap.total else None
    percent = "" if fraction is None else f" {100 * fraction:3.0f}%"
    essentials = (
        f"done {snap.done}/{total}{percent} {_duration(snap.eta_s)} "
        f"{snap.rate:.1f} req/s"
    )
    # A fifth of the width: room for the fields that follow it on the line.
    bar_width = max(MIN_BAR, min(MAX_BAR, width // 5))
    first = f"{_bar(bar_width, fraction)} {essentials}"
    if len(first) > width:  # very narrow: the essentials alone, wrapped at spaces
        return textwrap.wrap(essentials, width) or [""]
    lines = [first]
    second = ""
    for field in snap.extras:
        if len(lines[0]) + len(SEPARATOR) + len(field) <= width and not second:
            lines[0] += SEPARATOR + field
        elif len(second) + (len(SEPARATOR) if second else 0) + len(field) <= width:
            second = f"{second}{SEPARATOR}{field}" if second else field
    if second:
        lines.append(second)
    return lines


class LiveView:
    """A rich renderable that lays the latest snapshot out for the console's width."""

    def __init__(self) -> None:
        self.snapshot = Snapshot(0, None, False, None, 0.0, ["starting"])

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> RenderResult:
        # rich is loaded only for a live bar: status lines and --progress off
        # start quicker without it.
        from rich.text import Text

        for line in layout(options.max_width, self.snapshot):
            yield Text(line, no_wrap=True, overflow="crop")
