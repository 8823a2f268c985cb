"""Asking: one request of a job, from its turn to its answer, retried.

Each attempt waits its turn at the throttle, gets the supervisor's permit (none
once the run is stopping), is sent once, and is counted; a transient failure
goes to the retry policy with the throttle's decision about it. A stream is
asked for after a 408, because Mira cuts a plain call at 30 s and not a stream.
A 401 for a key that was rotated meanwhile (api/keys.py) sends the same request
again with the new key, as if the refusal had not happened.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from worker.api.client import Client
from worker.api.keys import KeyRing
from worker.domain.answer import Answer
from worker.domain.job import Job
from worker.errors import AuthError, RetryableError, WorkerError
from worker.flow.throttle import Throttle, Turn
from worker.report.tally import Charge, Tally
from worker.run.crew import Crew
from worker.run.retry import Retry, RetryPolicy

log = logging.getLogger("worker.run")


class Admission(Protocol):
    """The supervisor's say on each request (run/pipeline.py's Permit)."""

    def grant(self, job: Job) -> bool: ...

    def done(self, job: Job) -> None: ...


class Unsent(Exception):
    """The run is stopping: this job's request was not started."""


class _Rotated(Exception):
    """A 401 for a key that has a successor: send the request again."""


class Tries:
    """One job's requests so far: how many, what they cost, and how the next
    one is sent."""

    __slots__ = ("before", "kopecks", "number", "priced", "retried", "stream")

    def __init__(self, *, stream: bool) -> None:
        self.number = 0  # the attempt under way (a free retry does not count)
        self.before = 0  # attempts of the job's earlier requests (re-asks)
        self.kopecks = 0.0  # what its answers were billed, as priced
        self.priced = True  # False: an answer came before Mira's prices did
        self.retried = False
        self.stream = stream

    def billed(self, charge: Charge) -> None:
        """An answer (or a 200 that is none) was billed `charge`."""
        self.kopecks += charge.kopecks
        self.priced = self.priced and charge.final

    def cost_rub(self) -> float | None:
        """What the job's answers cost; None when one was priced before Mira's
        prices were known (collect prices it at the summary's)."""
        return self.kopecks / 100 if self.priced else None

    def asked(self) -> None:
        """A request was answered and the job asks another (a re-ask)."""
        self.before += self.number
        self.number = 0


@dataclass(frozen=True, slots=True)
class Asker:
    """What asking needs: the client, the flow control, the retry policy, the
    counts, the workers' crew and the supervisor's permit."""

    client: Client
    throttle: Throttle
    policy: RetryPolicy
    tally: Tally
    crew: Crew
    permit: Admission
    keys: KeyRing | None = None  # None: the key cannot change
    stream: str = "auto"  # auto: a stream after a 408; always; never

    async def ask(
        self, job: Job, payload: bytes, tries: Tries, task: asyncio.Task[None]
    ) -> tuple[Answer, float]:
        """`payload` asked until answered; the answer and its latency.

        Raises:
            Unsent: the run is stopping; nothing was sent for this attempt.
            FatalError: the run must stop (401, 402, a quota).
            JobError: the job fails (a refusal, or retries exhausted).
        """
        tally = self.tally

        async def attempt(number: int) -> tuple[Answer, float]:
            tries.number = number
            return await self._attempt(job, payload, tries, task)

        def on_retry(exc: RetryableError, number: int) -> None:
            if not tries.retried:
                tries.retried = True
                tally.retrying(True)
            tally.retried(exc.cause)
            if exc.status == 408 and self.stream == "auto":
                tries.stream = True  # Mira cuts a plain call at 30 s, not a stream

        try:
            return await self.policy.call(attempt, on_retry=on_retry)
        finally:
            if tries.retried:
                tries.retried = False
                tally.retrying(False)

    async def _attempt(
        self, job: Job, payload: bytes, tries: Tries, task: asyncio.Task[None]
    ) -> tuple[Answer, float]:
        """One request, from its turn to its answer.

        Raises:
            Retry: it failed transiently; with the throttle's decision about it.
        """
        while True:
            turn = self.throttle.turn(job)
            try:
                async with turn:
                    if not self.permit.grant(job):
                        raise Unsent
                    try:
                        return await self._send(job, payload, tries, task, turn)
                    finally:
                        self.permit.done(job)
            except _Rotated:
                continue  # the same request, with the new key
            except RetryableError as exc:
                if turn.refusal is not None and turn.refusal.kind is not None:
                    self.tally.refusal(turn.refusal.kind)
                raise Retry(exc, turn.refusal) from exc

    async def _send(
        self,
        job: Job,
        payload: bytes,
        tries: Tries,
        task: asyncio.Task[None],
        turn: Turn,
    ) -> tuple[Answer, float]:
        """The request itself, inside its turn."""
        tally, crew, keys = self.tally, self.crew, self.keys
        generation = 0 if keys is None else keys.generation  # the key it carries
        tally.sent()
        crew.began(task)
        try:
            answer = await self.client.complete(payload, stream=tries.stream)
        except WorkerError as exc:
            tries.billed(tally.refused(exc.status, body=exc.body, model=job.model))
            if isinstance(exc, RetryableError):
                log_attempt(logging.DEBUG, job, exc, tries.number)
            elif (
                isinstance(exc, AuthError)
                and keys is not None
                and keys.renewed(since=generation)
            ):
                raise _Rotated from exc
            raise
        except BaseException:
            tally.refused(None)
            raise
        finally:
            crew.ended(task)
        latency_s = turn.elapsed_s()
        usage = answer.body.get("usage")
        charge = tally.answered(answer.status, latency_s, usage, job.model)
        tries.billed(charge)
        turn.succeeded(latency_s, charge.tokens)
        return answer, latency_s


def log_attempt(
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
