"""A worker: takes jobs off the queue and brings each one to one outcome.

Only here is an error given its meaning for the run: a FatalError stops it, a
JobError is the job's outcome (a RetryableError never gets here: asking, in
ask.py, retries it). A job whose request never started because the run is
stopping is left unwritten, for a resume. Each outcome written goes to the
run's outcome hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from worker.domain.answer import Answer
from worker.domain.job import Job
from worker.errors import (
    FatalError,
    JobError,
    OutputError,
    SystematicFailureError,
    UnrecordableResponseError,
)
from worker.files.records import Effort, Outcome, Recorder
from worker.report.tally import Tally
from worker.run.ask import Asker, Tries, Unsent, log_attempt
from worker.run.hooks import AskAgain, Conversation, Hooks, Reject
from worker.run.queue import JobQueue
from worker.run.stop import StopController

log = logging.getLogger("worker.run")


@dataclass(frozen=True, slots=True)
class Crewmates:
    """What every worker shares."""

    asker: Asker
    recorder: Recorder
    tally: Tally
    stop: StopController
    hooks: Hooks = field(default_factory=Hooks)
    max_consecutive_failures: int = 0


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
        parts = self._parts
        tries = Tries(stream=parts.asker.stream == "always")
        talk = Conversation.of(job)
        while True:
            try:
                answer, latency_s = await parts.asker.ask(
                    job, talk.payload, tries, task
                )
            except Unsent:
                return False
            except FatalError as exc:
                parts.stop.request(exc.stop_reason, str(exc))
                return False
            except JobError as exc:
                return self._fail(job, exc, _effort(tries), _reasks(talk))
            verdict = parts.hooks.judged(talk, answer)
            if isinstance(verdict, AskAgain):
                if verdict.reask:
                    talk.reasks += 1
                    parts.tally.reasked()
                else:
                    talk.widened = True
                talk.payload = verdict.payload
                tries.asked()
                continue
            effort = _effort(tries, latency_s)
            if isinstance(verdict, Reject):
                return self._fail(job, verdict.error, effort, verdict.extra)
            extra = {} if verdict is None else verdict.extra
            return self._succeed(job, answer, effort, extra)

    def _succeed(
        self,
        job: Job,
        answer: Answer,
        effort: Effort,
        extra: Mapping[str, object],
    ) -> bool:
        """Write the result; False when the writer failed."""
        parts = self._parts
        try:
            parts.recorder.answer(job, answer, effort, extra=extra)
            parts.hooks.settled(job, Outcome(job.id, answer=answer, extra=extra))
        except OutputError:
            return False
        except orjson.JSONEncodeError as exc:
            # A body orjson read but cannot write (nested too deep): retrying
            # would pay for the same answer again, so the job fails here.
            problem = UnrecordableResponseError(
                f"the answer cannot be recorded: {exc}",
                status=answer.status,
                request_id=answer.request_id,
            )
            return self._fail(job, problem, effort)
        self._consecutive_failures = 0
        parts.tally.succeeded()
        return True

    def _fail(
        self,
        job: Job,
        exc: JobError,
        effort: Effort,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Write the failure; False when the writer failed."""
        parts = self._parts
        log_attempt(logging.WARNING, job, exc, effort.attempts, failed=True)
        try:
            parts.recorder.failure(job, exc, effort, extra=extra)
            parts.hooks.settled(job, Outcome(job.id, error=exc, extra=extra or {}))
        except OutputError:
            return False
        parts.tally.failed(exc.code)
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


def _effort(tries: Tries, latency_s: float = 0.0) -> Effort:
    """What the job's outcome took: every attempt of every request."""
    return Effort(tries.before + tries.number, latency_s, tries.cost_rub())


def _reasks(talk: Conversation) -> Mapping[str, object]:
    return {"reasks": talk.reasks} if talk.reasks else {}
