"""How a run is asked to stop: the stop reason, and the events workers watch."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("worker.run")


class RunControl:
    """How the run is asked to stop; the first reason given wins."""

    def __init__(self) -> None:
        self.stop_reason: str | None = None
        self.message: str | None = None
        self.fatal = False
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()

    def request_stop(
        self, reason: str, message: str | None = None, *, fatal: bool = False
    ) -> None:
        """Stop taking work; a fatal stop also cancels requests in flight."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.message = message
            self.fatal = fatal
            log.warning(
                "stopping (%s)%s",
                reason,
                f": {message}" if message else "",
                extra={"stop_reason": reason},
            )
        self.stopping.set()

    def force(self) -> None:
        """Cancel requests in flight now (a second signal)."""
        self.forced.set()
