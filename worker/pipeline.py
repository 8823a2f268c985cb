"""The run: reader -> bounded queue -> N workers, each writing through the one writer.

Stops come in two kinds. A FatalError (401, 402) propagates out of its worker, and
the TaskGroup cancels everything else at once. A graceful stop (signal, budget,
deadline, systematic failure) is a flag: nothing new starts, requests in flight
get `shutdown_grace_s` to finish, then the group is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import BinaryIO, Protocol

from tenacity import AsyncRetrying, RetryCallState

from worker.client import ChatReply
from worker.config import Settings
from worker.control import RunControl
from worker.errors import (
    FatalError,
    JobError,
    QuotaExhaustedError,
    RateLimitedError,
    RetryableError,
    StopRunError,
    WorkerError,
)
from worker.flow import AdaptiveLimiter, Clock, Pacer, RetryAfterGate, Sleep
from worker.intake import Intake, Shard
from worker.jsonl import ResultWriter, count_lines, iter_lines
from worker.models import Job
from worker.records import RecordIds, error_record, success_record
from worker.resume import ResumeState
from worker.retry import build_retrying, call_with_retries
from worker.summary import RunStats

log = logging.getLogger("worker.run")

QUEUE_LOW_WATER = 32


class Completer(Protocol):
    """What the pipeline needs of a client: one attempt per call."""

    async def complete(self, payload: bytes) -> ChatReply: ...


def _log_fields(job: Job, exc: WorkerError, attempt: int) -> dict[str, object]:
    """The fields a JSON log line carries about one job's failed attempt."""
    return {
        "job_id": job.id,
        "status": exc.status,
        "request_id": exc.request_id,
        "attempt": attempt,
    }


class _Abandoned(Exception):
    """The run is stopping: leave this job for a resume, write nothing."""


class _GraceExpired(Exception):
    """Requests in flight had their grace period; cancel them."""


class Pipeline:
    """One run over one input stream."""

    def __init__(
        self,
        settings: Settings,
        client: Completer,
        writer: ResultWriter,
        *,
        resume: ResumeState,
        control: RunControl,
        stats: RunStats,
        shard: Shard | None = None,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self._settings = settings
        self._client = client
        self._writer = writer
        self._resume = resume
        self._control = control
        self._shard = shard
        self._clock = clock
        self._sleep = sleep
        self.stats = stats
        self.limiter = AdaptiveLimiter(settings.concurrency)
        self.gate = RetryAfterGate(clock=clock, sleep=self._stoppable_sleep)
        self._rpm = (
            Pacer(settings.rpm / 60, clock=clock, sleep=self._stoppable_sleep)
            if settings.rpm
            else None
        )
        self._tpm = (
            Pacer(settings.tpm / 60, clock=clock, sleep=self._stoppable_sleep)
            if settings.tpm
            else None
        )
        self._ids = RecordIds()
        # The queue is bounded by the reader, which pauses at `_high` queued jobs
        # and resumes at `_low`: one wake-up per (high - low) jobs instead of
        # one per job, as a full asyncio.Queue(maxsize) would cost.
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._high = max(QUEUE_LOW_WATER * 2, 4 * settings.concurrency)
        self._low = self._high // 2
        self._room = asyncio.Event()
        self._room.set()
        self._tokens_estimated = 0
        self._tokens_reported = 0
        self._consecutive_failures = 0
        self._live_workers = 0
        self._watcher: asyncio.Task[None] | None = None

    async def run(self, source: BinaryIO) -> None:
        """Process every job of `source` until done or stopped.

        How the run ended is left on the RunControl (no stop reason = completed);
        a FatalError has already cancelled everything when this returns.
        """
        workers = self._settings.concurrency
        try:
            async with asyncio.TaskGroup() as group:
                self._watcher = group.create_task(self._watch())
                group.create_task(self._read(source, workers))
                self._live_workers = workers
                for _ in range(workers):
                    group.create_task(self._work(self._new_retrying()))
        except* FatalError:
            pass
        except* _GraceExpired:
            log.warning("grace period over: cancelled the requests still in flight")

    def _new_retrying(self) -> AsyncRetrying:
        return build_retrying(
            self._settings.max_attempts,
            sleep=self._stoppable_sleep,
            before_sleep=self._count_retry,
        )

    async def _stoppable_sleep(self, seconds: float) -> None:
        # A stop must not wait out a backoff or a Retry-After pause.
        if self._control.stopping.is_set():
            raise _Abandoned
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self._control.stopping.wait())
        try:
            await asyncio.wait([sleeper, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopping.cancel()
        if self._control.stopping.is_set():
            raise _Abandoned

    async def _watch(self) -> None:
        """Turn the deadline into a stop; after a graceful stop, enforce the grace."""
        control = self._control
        try:
            async with asyncio.timeout(self._settings.deadline_s):
                await control.stopping.wait()
        except TimeoutError:
            control.request_stop(
                "deadline",
                f"the deadline of {self._settings.deadline_s:g} s was reached",
            )
        if control.fatal:
            return
        try:
            async with asyncio.timeout(self._settings.shutdown_grace_s):
                await control.forced.wait()
        except TimeoutError:
            pass
        raise _GraceExpired

    # -- reader ---------------------------------------------------------------

    async def _read(self, source: BinaryIO, workers: int) -> None:
        intake = Intake(
            default_model=self._settings.model,
            shard=self._shard,
            resume=self._resume,
            stats=self.stats,
            writer=self._writer,
            record_ids=self._ids,
            expected_lines=(lines := count_lines(source)),
        )
        # For the progress ETA before the whole file is read: blank lines and
        # the shard split make it an estimate.
        self.stats.expected_jobs = lines // (self._shard.count if self._shard else 1)
        async for line_no, raw in iter_lines(source):
            if self._control.stopping.is_set():
                break
            job = intake.admit(line_no, raw)
            if job is not None:
                if self._queue.qsize() >= self._high:
                    self._room.clear()
                    await self._room.wait()
                self._queue.put_nowait(job)
        else:
            self.stats.input_complete = True
        for _ in range(workers):
            self._queue.put_nowait(None)

    # -- workers --------------------------------------------------------------

    async def _work(self, retrying: AsyncRetrying) -> None:
        try:
            while (job := await self._queue.get()) is not None:
                if not self._room.is_set() and self._queue.qsize() <= self._low:
                    self._room.set()
                if not self._control.stopping.is_set():
                    await self._process(job, retrying)
        finally:
            self._live_workers -= 1
            if self._live_workers == 0 and self._watcher is not None:
                self._watcher.cancel()

    async def _process(self, job: Job, retrying: AsyncRetrying) -> None:
        attempts = 0
        retried = False

        async def attempt() -> tuple[ChatReply, float]:
            nonlocal attempts, retried
            attempts += 1
            try:
                return await self._attempt(job)
            except RetryableError as exc:
                if not retried:
                    retried = True
                    self.stats.retrying += 1
                log.debug(
                    "job %s attempt %d failed: %s",
                    job.id,
                    attempts,
                    exc,
                    extra=_log_fields(job, exc, attempts),
                )
                raise

        try:
            reply, latency_s = await call_with_retries(retrying, attempt)
        except _Abandoned:
            return
        except StopRunError as exc:
            self._control.request_stop(exc.stop_reason, str(exc))
            return
        except FatalError as exc:
            self._control.request_stop(exc.stop_reason, str(exc), fatal=True)
            raise
        except JobError as exc:
            self._fail(job, exc, attempts)
            return
        finally:
            if retried:
                self.stats.retrying -= 1
        self._consecutive_failures = 0
        self.stats.succeeded += 1
        self._writer.write_result(
            success_record(
                self._ids.next(),
                job.id,
                status=reply.status,
                request_id=reply.request_id,
                body=reply.body,
                metadata=job.metadata,
                attempts=attempts,
                latency_s=latency_s,
            )
        )

    def _fail(self, job: Job, exc: JobError, attempts: int) -> None:
        stats = self.stats
        stats.failed += 1
        log.warning(
            "job %s failed: %s", job.id, exc, extra=_log_fields(job, exc, attempts)
        )
        self._writer.write_error(
            error_record(
                self._ids.next(), job.id, exc, metadata=job.metadata, attempts=attempts
            )
        )
        self._consecutive_failures += 1
        limit = self._settings.max_consecutive_failures
        if limit and self._consecutive_failures >= limit:
            self._control.request_stop(
                "systematic_failure",
                f"{self._consecutive_failures} jobs in a row failed, "
                f"the last with {exc}; "
                "fix the cause, then rerun with --retry-failed",
            )

    async def _attempt(self, job: Job) -> tuple[ChatReply, float]:
        control, stats, limiter = self._control, self.stats, self.limiter
        if control.stopping.is_set():
            raise _Abandoned
        budget = self._settings.token_budget
        if budget is not None and stats.total_tokens >= budget:
            control.request_stop(
                "token_budget",
                f"{stats.total_tokens} tokens used of a budget of {budget}",
            )
            raise _Abandoned
        epoch = await limiter.acquire()
        try:
            tokens_charged = await self._wait_turn(job)
            if control.stopping.is_set():
                raise _Abandoned  # stopped while this job waited for its turn
            stats.requests_sent += 1
            stats.in_flight += 1
            started = self._clock()
            try:
                reply = await self._client.complete(job.payload)
            except WorkerError as exc:
                if exc.status is not None:
                    stats.statuses[exc.status] += 1
                if isinstance(exc, RateLimitedError):
                    self._on_rate_limited(exc, epoch)
                raise
            finally:
                stats.in_flight -= 1
            latency_s = self._clock() - started
            stats.statuses[reply.status] += 1
            stats.latency.add(latency_s)
            tokens = stats.add_usage(reply.body.get("usage"))
            if self._tpm is not None and tokens:
                self._tpm.adjust(tokens - tokens_charged)
                self._tokens_estimated += job.tokens_est
                self._tokens_reported += tokens
            limiter.on_success()
            return reply, latency_s
        finally:
            limiter.release()

    async def _wait_turn(self, job: Job) -> float:
        """Wait out any Retry-After pause and the pacing; send right after.

        Returns the tokens charged to --tpm for this request.
        """
        charged = 0.0
        while True:
            await self.gate.wait()
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                charged = self._tokens_expected(job)
                await self._tpm.acquire(charged)
            # A 429 that arrived while this request waited for its slot wins;
            # the tokens charged for the slot it gives up are handed back.
            if self.gate.remaining_s() <= 0:
                return charged
            if self._tpm is not None:
                self._tpm.adjust(-charged)

    def _tokens_expected(self, job: Job) -> float:
        # The estimate, scaled by how far reported usage has differed from
        # estimates so far: a steady under-estimate must not overrun --tpm.
        if self._tokens_estimated == 0:
            return float(job.tokens_est)
        return job.tokens_est * self._tokens_reported / self._tokens_estimated

    def _on_rate_limited(self, exc: RateLimitedError, epoch: int) -> None:
        if self.limiter.on_congestion(epoch):
            log.info(
                "429: concurrency cut to %d; pausing all requests for %.3g s",
                self.limiter.limit,
                exc.retry_after_s,
            )
        if exc.retry_after_s > self._settings.max_retry_after_s:
            raise QuotaExhaustedError(
                f"the API asked to wait {exc.retry_after_s:g} s (over "
                f"--max-retry-after {self._settings.max_retry_after_s:g} s): "
                f"{exc.message}",
                retry_after_s=exc.retry_after_s,
                status=exc.status,
                request_id=exc.request_id,
            ) from exc
        self.gate.defer(exc.retry_after_s)

    def _count_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, RetryableError):
            return
        self.stats.retries[exc.cause] += 1
