"""SIGTERM, SIGINT, SIGHUP: the first asks the run to stop gracefully, the
second cancels. A hang-up (a closed terminal or SSH session) is a stop like
the others: answers in flight land within the grace, the summary is written."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from worker.exits import StopReason
from worker.run.stop import StopController

_REASON_FOR = {
    signal.SIGINT: StopReason.SIGINT,
    signal.SIGTERM: StopReason.SIGTERM,
    signal.SIGHUP: StopReason.SIGHUP,
}


@contextmanager
def handle_signals(stop: StopController) -> Iterator[None]:
    """Install the handlers for the duration of a run, then restore the defaults."""
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        # Only sets state: a signal handler never awaits.
        if received:
            stop.cancel_now()
            return
        received.append(signum)
        stop.request(_REASON_FOR[signum], f"received {signum.name}")

    installed = []
    for signum in _REASON_FOR:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on POSIX
            pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
