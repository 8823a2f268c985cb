"""The queue between the reader and the workers: bounded, refilled in batches."""

from __future__ import annotations

import asyncio

from worker.domain.job import Job

QUEUE_LOW_WATER = 32


class JobQueue:
    """A queue the reader pauses on at a high-water mark and resumes at half.

    One wake-up of the reader per (high - low) jobs, where a full
    asyncio.Queue(maxsize) would wake it once per job. `None` ends a worker.
    """

    def __init__(self, concurrency: int) -> None:
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._high = max(QUEUE_LOW_WATER * 2, 4 * concurrency)
        self._low = self._high // 2
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, job: Job) -> None:
        """Queue a job, first waiting for room when the queue is full."""
        if self._queue.qsize() >= self._high:
            self._room.clear()
            await self._room.wait()
        self._queue.put_nowait(job)

    def end(self, workers: int) -> None:
        """One end marker per worker."""
        for _ in range(workers):
            self._queue.put_nowait(None)

    async def get(self) -> Job | None:
        """The next job, or None: this worker is done."""
        job = await self._queue.get()
        if not self._room.is_set() and self._queue.qsize() <= self._low:
            self._room.set()
        return job
