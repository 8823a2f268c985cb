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

from worker.exits import StopReason

log = logging.getLogger("worker.run")


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
