"""A worker: takes jobs off the queue and sends each one, retried, to one outcome.

Only here is an error given its meaning for the run: a FatalError stops it, a
JobError is the job's outcome, and a RetryableError goes to the retry policy.
A job whose request never started because the run is stopping is left
unwritten, for a resume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from worker.api.client import ChatReply, Client
from worker.errors import (
    FatalError,
    JobError,
    OutputError,
    RetryableError,
    SystematicFailureError,
    UnrecordableResponseError,
    WorkerError,
)
from worker.files.jobs import Job
from worker.files.records import Answer, Outcome, Recorder
from worker.flow.throttle import Throttle, Turn
from worker.report.tally import Tally
from worker.run.crew import Crew
from worker.run.queue import JobQueue
from worker.run.retry import RetryPolicy
from worker.run.stop import StopController

log = logging.getLogger("worker.run")


class Admission(Protocol):
    """The supervisor's say on each request (run/pipeline.py's Permit)."""

    def grant(self, job: Job) -> bool: ...

    def done(self, job: Job) -> None: ...


class Unsent(Exception):
    """The run is stopping: this job's request was not started."""


@dataclass(frozen=True, slots=True)
class Crewmates:
    """What every worker shares."""

    client: Client
    throttle: Throttle
    policy: RetryPolicy
    recorder: Recorder
    tally: Tally
    stop: StopController
    crew: Crew
    permit: Admission  # the supervisor's say, just before each send
    max_consecutive_failures: int = 0
    stream: str = "auto"  # auto: a stream after a 408 (Mira's cut of long answers)
    # --dedupe: the jobs asking a written job's request get its outcome
    settle: Callable[[Job, Outcome], None] | None = None
    # --cache: a written answer is kept for later runs, by fingerprint
    remember: Callable[[str, Answer], None] | None = None


class Sender:
    """The loop every worker runs, over what the workers share."""

    def __init__(self, parts: Crewmates) -> None:
        self._parts = parts
        self._consecutive_failures = 0

    async def work(self, queue: JobQueue) -> None:
        """One worker: send jobs until the queue or the run ends it."""
        task = asyncio.current_task()
        assert task is not None
        while (job := await queue.get()) is not None:
            if not await self._settle(job, task):
                return

    async def _settle(self, job: Job, task: asyncio.Task[None]) -> bool:
        """Bring one job to its outcome; False when this worker must end."""
        parts, attempts = self._parts, [0]
        retried, stream = False, parts.stream == "always"

        async def attempt(number: int) -> tuple[ChatReply, float]:
            attempts[0] = number
            return await self._attempt(job, number, task, stream)

        def on_retry(exc: RetryableError, number: int) -> None:
            nonlocal retried, stream
            if not retried:
                retried = True
                parts.tally.retrying(True)
            parts.tally.retried(exc.cause)
            if exc.status == 408 and parts.stream == "auto":
                stream = True  # Mira cuts a plain call at 30 s; a stream it does not

        try:
            reply, latency_s = await parts.policy.call(attempt, on_retry=on_retry)
        except Unsent:
            return False
        except FatalError as exc:
            parts.stop.request(exc.stop_reason, str(exc))
            return False
        except JobError as exc:
            return self._fail(job, exc, attempts[0])
        finally:
            if retried:
                parts.tally.retrying(False)
        return self._succeed(job, reply, latency_s, attempts[0])

    async def _attempt(
        self, job: Job, number: int, task: asyncio.Task[None], stream: bool
    ) -> tuple[ChatReply, float]:
        """One request, from its turn to its answer."""
        parts = self._parts
        async with parts.throttle.turn(job) as turn:
            if not parts.permit.grant(job):
                raise Unsent
            try:
                return await self._send(job, number, task, stream, turn)
            finally:
                parts.permit.done(job)

    async def _send(
        self,
        job: Job,
        number: int,
        task: asyncio.Task[None],
        stream: bool,
        turn: Turn,
    ) -> tuple[ChatReply, float]:
        """The request itself, inside its turn."""
        parts = self._parts
        parts.tally.sent()
        crew = parts.crew
        crew.began(task)
        try:
            reply = await parts.client.complete(job.payload, stream=stream)
        except WorkerError as exc:
            parts.tally.refused(exc.status, body=exc.body, model=job.model)
            if isinstance(exc, RetryableError):
                _log_attempt(logging.DEBUG, job, exc, number)
            raise
        except BaseException:
            parts.tally.refused(None)
            raise
        finally:
            crew.ended(task)
        latency_s = turn.elapsed_s()
        usage = reply.body.get("usage")
        tokens = parts.tally.answered(reply.status, latency_s, usage, job.model)
        turn.succeeded(latency_s, tokens)
        return reply, latency_s

    def _succeed(
        self, job: Job, reply: ChatReply, latency_s: float, attempts: int
    ) -> bool:
        """Write the result; False when the writer failed."""
        answer = Answer(reply.status, reply.request_id, reply.body, reply.streamed)
        try:
            self._parts.recorder.answer(
                job.id,
                answer,
                metadata=job.metadata,
                attempts=attempts,
                latency_s=latency_s,
                fingerprint=job.fingerprint,
            )
            if self._parts.settle is not None:
                self._parts.settle(job, Outcome(job.id, answer=answer))
            if self._parts.remember is not None:
                self._parts.remember(job.fingerprint, answer)
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
        self._parts.tally.succeeded()
        return True

    def _fail(self, job: Job, exc: JobError, attempts: int) -> bool:
        """Write the failure; False when the writer failed."""
        parts = self._parts
        _log_attempt(logging.WARNING, job, exc, attempts, failed=True)
        try:
            parts.recorder.failure(
                job.id,
                exc,
                metadata=job.metadata,
                attempts=attempts,
                fingerprint=job.fingerprint,
            )
            if parts.settle is not None:
                parts.settle(job, Outcome(job.id, error=exc))
        except OutputError:
            return False
        parts.tally.failed()
        self._consecutive_failures += 1
        limit = parts.max_consecutive_failures
        if limit and self._consecutive_failures >= limit:
            systematic = SystematicFailureError(
                f"{self._consecutive_failures} jobs in a row failed, "
                f"the last with {exc}; "
                "fix the cause, then rerun with --retry-failed"
            )
            parts.stop.request(systematic.stop_reason, str(systematic))
        return True


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
