"""Live progress: a rich bar on a terminal, else a status line every N seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TextIO, cast

from worker.config import Settings
from worker.domain.day import DayWait
from worker.logs import logs_into
from worker.report.display import LiveView, Snapshot
from worker.report.stats import RunStats

if TYPE_CHECKING:
    from rich.live import Live

log = logging.getLogger("worker.progress")

BAR_REFRESH_S = 0.25


class InFlightLimit(Protocol):
    """What the display shows of the flow control: the in-flight limit, the
    ceiling it may not pass, and how long every request is held back."""

    @property
    def limit(self) -> int: ...

    @property
    def ceiling(self) -> int: ...

    def paused_s(self) -> float: ...


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressReporter:
    """Reports a run's counters while it runs; an async context manager."""

    def __init__(
        self,
        settings: Settings,
        stats: RunStats,
        limiter: InFlightLimit,
        out: TextIO,
        *,
        cost: Callable[[], float] | None = None,
        waiting: Callable[[], DayWait | None] = lambda: None,
    ) -> None:
        mode = settings.progress
        if mode == "auto":
            # JSON logs are for collectors: status lines, never a bar.
            use_bar = _is_terminal(out) and settings.log_format == "text"
            mode = "bar" if use_bar else "log"
        self.mode = mode
        self._interval_s = settings.progress_interval_s
        self._stats = stats
        self._limiter = limiter
        self._out = out
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._last_sent = 0
        self._last_time = self._started
        self._rate = 0.0
        self._cost = cost
        self._waiting = waiting
        self._live: Live | None = None
        self._view = LiveView()
        self._failed = False
        self._logs = ExitStack()

    async def __aenter__(self) -> ProgressReporter:
        if self.mode == "bar":
            from rich.console import Console  # only a live bar needs rich
            from rich.file_proxy import FileProxy
            from rich.live import Live

            self._live = Live(
                self._view,
                console=Console(file=self._out, stderr=True),
                refresh_per_second=1 / BAR_REFRESH_S,
                transient=False,
            )
            self._live.start()
            # A log line written past the display would land inside it, and
            # leave a stale frame behind: through the console it goes above.
            proxy = cast(TextIO, FileProxy(self._live.console, self._out))
            self._logs.enter_context(logs_into(proxy, instead_of=self._out))
            self._task = asyncio.create_task(self._tick(BAR_REFRESH_S, self._draw_bar))
        elif self.mode == "log":
            self._task = asyncio.create_task(
                self._tick(self._interval_s, self._log_line)
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            # asyncio.wait neither raises the task's error nor swallows our cancel.
            await asyncio.wait([self._task])
        if self._live is not None:
            self._safely(self._draw_bar)
            self._safely(self._live.stop)
        self._logs.close()

    async def _tick(self, interval_s: float, draw: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._update_rate()
            if not self._safely(draw):
                return

    def _safely(self, step: Callable[[], None]) -> bool:
        """Run a display step; a failure ends the display, never the run."""
        if self._failed:
            return False
        try:
            step()
        except Exception as exc:
            self._failed = True
            log.warning(
                "the progress display failed (%s: %s); the run goes on without it",
                type(exc).__name__,
                exc,
            )
            return False
        return True

    def _update_rate(self) -> None:
        now = time.monotonic()
        sent = self._stats.requests_sent
        span = now - self._last_time
        if span >= 1.0 or self._rate == 0.0:
            if span > 0:
                self._rate = (sent - self._last_sent) / span
            self._last_sent, self._last_time = sent, now

    def status_line(self) -> str:
        """done / failed / retrying / in flight, concurrency, rate, tokens."""
        s = self._stats
        total = self._total()
        of = "?" if total is None else f"{total}{'' if s.input_complete else '~'}"
        return (
            f"done {s.done + s.skipped}/{of} "
            f"(ok {s.succeeded}, failed {s.failed}, skipped {s.skipped}) | "
            f"retrying {s.retrying} | in flight {s.in_flight} | "
            f"concurrency {self._limiter.limit}/{self._limiter.ceiling} | "
            f"{self._rate:.1f} req/s | {s.total_tokens:,} tokens"
            f"{self._paused(' | ')}"
        )

    def _paused(self, before: str) -> str:
        """`paused 4 s` while a Retry-After holds every request back; the
        wait for Mira's daily reset, and why, while it lasts."""
        if (wait := self._waiting()) is not None:
            why = "daily cap" if wait.reason == "daily_cap" else "--daily-reserve"
            return (
                f"{before}waiting for the daily reset ({why}) until "
                f"{wait.until:%Y-%m-%d %H:%M:%S} UTC"
            )
        paused_s = self._limiter.paused_s()
        return f"{before}paused {paused_s:.0f} s" if paused_s >= 0.5 else ""

    def _total(self) -> int | None:
        return self._stats.expected_total()

    def _eta_s(self) -> float | None:
        s, total = self._stats, self._total()
        if total is None or self._rate <= 0:
            return None
        return max(0, total - s.done - s.skipped) / self._rate

    def _log_line(self) -> None:
        eta = self._eta_s()
        suffix = f" | ETA {eta:.0f} s" if eta is not None else ""
        log.info("progress: %s%s", self.status_line(), suffix)

    def _draw_bar(self) -> None:
        assert self._live is not None
        s = self._stats
        extras = [
            f"ok {s.succeeded} failed {s.failed}",
            f"retrying {s.retrying}",
            f"in flight {s.in_flight}/{self._limiter.limit}",
            f"{s.total_tokens:,} tokens",
        ]
        if self._cost is not None:
            extras.append(f"{self._cost():,.2f} RUB")
        if paused := self._paused(""):
            extras.insert(0, paused)
        self._view.snapshot = Snapshot(
            done=s.done + s.skipped,
            total=self._total(),
            estimated=not s.input_complete,
            eta_s=self._eta_s(),
            rate=self._rate,
            extras=extras,
        )
        self._live.refresh()
