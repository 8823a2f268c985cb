"""SIGTERM/SIGINT: the first asks the run to stop gracefully, the second forces it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from worker.control import RunControl
from worker.summary import EXIT_SIGINT, EXIT_SIGTERM

_EXIT_FOR = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class SignalState:
    """Which signal stopped the run, for the exit code."""

    def __init__(self) -> None:
        self.exit_code: int | None = None


@contextmanager
def handle_signals(control: RunControl) -> Iterator[SignalState]:
    """Install the handlers for the duration of a run, then restore the defaults."""
    loop = asyncio.get_running_loop()
    state = SignalState()

    def on_signal(signum: signal.Signals) -> None:
        # Only sets state: a signal handler never awaits.
        if state.exit_code is None:
            state.exit_code = _EXIT_FOR[signum]
            control.request_stop("interrupted", f"received {signum.name}")
        else:
            control.force()

    installed = []
    for signum in _EXIT_FOR:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on POSIX
            pass
    try:
        yield state
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
