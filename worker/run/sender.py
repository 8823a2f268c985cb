"""A worker: takes jobs off the queue and sends each one, retried, to one outcome.

Only here is an error given its meaning for the run: a FatalError stops it, a
JobError is the job's outcome, a RetryableError is retried, and RunStopping
leaves the job unwritten for a resume.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Protocol

import orjson
from tenacity import RetryCallState

from worker.api.client import ChatReply
from worker.config import Settings
from worker.errors import (
    FatalError,
    JobError,
    OutputError,
    RetryableError,
    UnrecordableResponseError,
    WorkerError,
)
from worker.exits import StopReason
from worker.files.jobs import Job
from worker.files.records import RecordIds, error_record, success_record
from worker.files.writer import ResultWriter
from worker.flow.throttle import Throttle
from worker.report.summary import RunStats
from worker.run.reader import JobQueue
from worker.run.retry import build_retrying, call_with_retries
from worker.run.stop import RunStopping, StopController

log = logging.getLogger("worker.run")


class Client(Protocol):
    """What the run needs of an API client: a session, and one attempt per call."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

    async def complete(self, payload: bytes) -> ChatReply: ...


class Sender:
    """What every worker shares: the client, the throttle, the writer, the stop."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        throttle: Throttle,
        writer: ResultWriter,
        *,
        stop: StopController,
        stats: RunStats,
        record_ids: RecordIds,
    ) -> None:
        self._settings = settings
        self._client = client
        self._throttle = throttle
        self._writer = writer
        self._stop = stop
        self._stats = stats
        self._ids = record_ids
        self._consecutive_failures = 0

    async def work(self, queue: JobQueue) -> None:
        """One worker: send jobs until the queue ends it."""
        retrying = build_retrying(
            self._settings.max_attempts,
            sleep=self._stop.sleep,
            before_sleep=self._count_retry,
        )
        while (job := await queue.get()) is not None:
            if self._stop.stopping.is_set():
                continue  # left for a resume; drain to the end marker
            attempts = 0
            retried = False

            async def attempt(job: Job = job) -> tuple[ChatReply, float]:
                nonlocal attempts, retried
                attempts += 1
                try:
                    async with self._throttle.turn(job) as turn:
                        reply = await self._client.complete(job.payload)
                        turn.succeeded(reply)
                except RetryableError as exc:
                    if not retried:
                        retried = True
                        self._stats.retrying += 1
                    _log_attempt(logging.DEBUG, job, exc, attempts)
                    raise
                return reply, turn.latency_s

            try:
                reply, latency_s = await call_with_retries(retrying, attempt)
            except RunStopping:
                continue
            except FatalError as exc:
                self._stop.request(exc.stop_reason, str(exc))
                return
            except JobError as exc:
                outcome = self._fail(job, exc, attempts)
            else:
                outcome = self._succeed(job, reply, latency_s, attempts)
            finally:
                if retried:
                    self._stats.retrying -= 1
            if not outcome:
                return  # the writer failed: the run is stopping (exit 7)

    def _succeed(
        self, job: Job, reply: ChatReply, latency_s: float, attempts: int
    ) -> bool:
        """Write the result; False when the writer failed."""
        record = success_record(
            self._ids.next(),
            job.id,
            status=reply.status,
            request_id=reply.request_id,
            body=reply.body,
            metadata=job.metadata,
            attempts=attempts,
            latency_s=latency_s,
        )
        try:
            self._writer.write_result(record)
        except OutputError:
            return False
        except orjson.JSONEncodeError as exc:
            # A body orjson read but cannot write (nested too deep): retrying
            # would pay for the same answer again, so the job fails here.
            problem = UnrecordableResponseError(
                f"the answer cannot be recorded: {exc}",
                status=reply.status,
                request_id=reply.request_id,
            )
            return self._fail(job, problem, attempts)
        self._consecutive_failures = 0
        self._stats.succeeded += 1
        return True

    def _fail(self, job: Job, exc: JobError, attempts: int) -> bool:
        """Write the failure; False when the writer failed."""
        _log_attempt(logging.WARNING, job, exc, attempts, failed=True)
        record = error_record(
            self._ids.next(), job.id, exc, metadata=job.metadata, attempts=attempts
        )
        try:
            self._writer.write_error(record)
        except OutputError:
            return False
        self._stats.failed += 1
        self._consecutive_failures += 1
        limit = self._settings.max_consecutive_failures
        if limit and self._consecutive_failures >= limit:
            self._stop.request(
                StopReason.SYSTEMATIC_FAILURE,
                f"{self._consecutive_failures} jobs in a row failed, "
                f"the last with {exc}; "
                "fix the cause, then rerun with --retry-failed",
            )
        return True

    def _count_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError):
            self._stats.retries[exc.cause] += 1


def _log_attempt(
    level: int, job: Job, exc: WorkerError, attempt: int, *, failed: bool = False
) -> None:
    """One line about a failed attempt (debug) or a failed job (warning)."""
    what = "failed" if failed else f"attempt {attempt} failed"
    log.log(
        level,
        "job %s %s: %s",
        job.id,
        what,
        exc,
        extra={
            "job_id": job.id,
            "status": exc.status,
            "request_id": exc.request_id,
            "attempt": attempt,
        },
    )
