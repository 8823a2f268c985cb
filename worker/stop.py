"""How a run stops: the reasons (exit code, severity, next step) and the controller.

Two kinds of stop. A graceful one (signal, deadline, budgets, systematic failure)
starts no new request and gives requests in flight a grace period. A fatal one
(output failure, 401, 402) cancels requests in flight at once. When two reasons
meet, the more serious one wins: a 401 during a graceful stop still exits 3.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

log = logging.getLogger("worker.run")


class StopReason(Enum):
    """Why a run stopped early; declared from the most serious to the mildest."""

    OUTPUT_FAILED = (
        "output_failed",
        7,
        "an output file could not be written (disk full, I/O error, quota): "
        "make room or fix the disk, then run the same command",
    )
    AUTH_FAILED = (
        "auth_failed",
        3,
        "the key was rejected (401): set a valid key and run the same command; "
        "finished jobs are kept",
    )
    PAYMENT_REQUIRED = (
        "payment_required",
        4,
        "top up the balance, then run the same command",
    )
    SYSTEMATIC_FAILURE = (
        "systematic_failure",
        6,
        "every recent job failed the same way: fix the cause (base URL, model, "
        "plan), then rerun with --retry-failed",
    )
    RATE_LIMIT_BUDGET = (
        "rate_limit_budget",
        5,
        "the API asked for a longer pause than --max-retry-after (quota spent for "
        "now): run the same command later",
    )
    DEADLINE = ("deadline", 5, "the --deadline was reached: rerun to continue")
    TOKEN_BUDGET = (
        "token_budget",
        5,
        "the --token-budget was reached: rerun (with a new budget) to continue",
    )
    SIGINT = (
        "interrupted",
        130,
        "stopped by a signal: run the same command to continue",
    )
    SIGTERM = (
        "interrupted",
        143,
        "stopped by a signal: run the same command to continue",
    )

    def __init__(self, label: str, exit_code: int, next_step: str) -> None:
        self.label = label
        self.exit_code = exit_code
        self.next_step = next_step

    @property
    def severity(self) -> int:
        """Higher is more serious; the budgets share one level, as do the signals."""
        return _SEVERITY[self.label]

    @property
    def fatal(self) -> bool:
        """True when requests in flight are cancelled at once."""
        return self.severity >= _SEVERITY["payment_required"]


_SEVERITY = {
    "output_failed": 6,
    "auth_failed": 5,
    "payment_required": 4,
    "systematic_failure": 3,
    "rate_limit_budget": 2,
    "deadline": 2,
    "token_budget": 2,
    "interrupted": 1,
}


class RunStopping(Exception):
    """The run is stopping: leave this job unwritten, for a resume."""


Sleep = Callable[[float], Awaitable[None]]


class StopController:
    """The one place a stop is asked for, and the events the run watches."""

    def __init__(self, *, sleep: Sleep) -> None:
        self.reason: StopReason | None = None
        self.message: str | None = None
        self.stopping = asyncio.Event()  # no new request may start
        self.cancelling = asyncio.Event()  # requests in flight are cancelled now
        self._sleep = sleep

    def request(self, reason: StopReason, message: str) -> None:
        """Stop for `reason`, unless a more serious reason was already given."""
        if self.reason is None or reason.severity > self.reason.severity:
            self.reason, self.message = reason, message
            log.warning(
                "stopping (%s): %s",
                reason.label,
                message,
                extra={"stop_reason": reason.label},
            )
        self.stopping.set()
        if reason.fatal:
            self.cancelling.set()

    def cancel_now(self) -> None:
        """Cancel requests in flight without waiting out the grace (a second signal)."""
        self.cancelling.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the run stops first: a stop never waits out a backoff.

        Raises:
            RunStopping: the run is stopping (before or during the sleep).
        """
        if self.stopping.is_set():
            raise RunStopping
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([sleeper, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopping.cancel()
        if self.stopping.is_set():
            raise RunStopping
