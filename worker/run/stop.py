"""How a stop is asked for: the one controller every part tells, and the supervisor
watches (pipeline.py does the stopping itself, by cancellation).

Every stop starts no new request. A graceful one (signal, deadline, budgets,
systematic failure) gives requests in flight --shutdown-grace; a fatal one
hurries them: a 401 or 402 leaves them at most a second to land (they are paid
for), and an output failure cancels them at once (nothing more can be written).
When two reasons meet, the more serious one wins: a 401 during a graceful stop
still exits 3.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from worker.exits import StopReason

log = logging.getLogger("worker.run")


class StopController:
    """The one place a stop is asked for, and the events the run watches."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.message: str | None = None
        self.stopping = asyncio.Event()  # no new request may start
        self.hurried = asyncio.Event()  # a fatal stop: the grace is short
        self.cancelling = asyncio.Event()  # requests in flight are cancelled now
        self.abandoned = 0  # requests cancelled in flight: slots left held
        self.at: datetime | None = None  # when the reason that stands was given

    def request(self, reason: StopReason, message: str) -> None:
        """Stop for `reason`, unless a more serious reason was already given."""
        if self.reason is None or reason.severity > self.reason.severity:
            self.reason, self.message = reason, message
            self.at = datetime.now(UTC)
            log.warning(
                "stopping (%s): %s",
                reason.label,
                message,
                extra={"stop_reason": reason.label},
            )
        self.stopping.set()
        if reason.fatal:
            self.hurried.set()
        if reason is StopReason.OUTPUT_FAILED:
            self.cancelling.set()

    def cannot_write(self, exc: BaseException) -> None:
        """An output file cannot be written: stop at once (exit 7)."""
        self.request(StopReason.OUTPUT_FAILED, str(exc))

    def cancel_now(self) -> None:
        """Cancel requests in flight without waiting out the grace (a second signal)."""
        self.cancelling.set()
