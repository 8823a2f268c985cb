"""The workers' tasks, and which of them have a request at the server.

A graceful stop is done by cancellation alone: the workers that are waiting
(for a job, a slot, a pace, a backoff) are cancelled at once, and those with a
request at the server finish it, write its outcome, and cancel themselves at
their next wait. The grace period is the supervisor's timeout around that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Crew:
    """The worker tasks of one run."""

    __slots__ = ("_sending", "_tasks", "draining")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending: set[asyncio.Task[Any]] = set()
        self.draining = False

    def start(self, group: asyncio.TaskGroup, work: Coroutine[Any, Any, None]) -> None:
        """Start one worker in the run's task group."""
        task = group.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def began(self, task: asyncio.Task[Any]) -> None:
        """`task` sent a request."""
        self._sending.add(task)

    def ended(self, task: asyncio.Task[Any]) -> None:
        """`task`'s request ended; during a drain, the task ends at its next wait."""
        self._sending.discard(task)
        if self.draining:
            # Its outcome is written before its next wait, where this lands.
            task.cancel()

    def sending_count(self) -> int:
        """Workers with a request at the server now."""
        return len(self._sending)

    def drain(self) -> None:
        """Cancel every worker that is only waiting; let the others finish."""
        self.draining = True
        for task in list(self._tasks):
            if task not in self._sending:
                task.cancel()
