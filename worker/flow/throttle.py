"""When a request may start: the Retry-After gate, the concurrency limit, the pacers
and the token budget, behind one `async with throttle.turn(job) as turn:`.

A worker waiting for the gate or a pacer holds no concurrency slot: it takes a
slot only once they would let it go, and gives the slot back if a 429 closed
the gate meanwhile. Leaving the block reports the outcome: a success grows
the limit, a 429 cuts it and pauses every worker.
"""

from __future__ import annotations

import logging
from types import TracebackType

from worker.api.client import ChatReply
from worker.config import Settings
from worker.errors import RateLimitedError, RetryableError, WorkerError
from worker.exits import StopReason
from worker.files.jobs import Job
from worker.flow.learn import Learner
from worker.flow.limiters import AdaptiveLimiter, Clock, Pacer, RetryAfterGate
from worker.report.summary import RunStats
from worker.run.stop import RunStopping, StopController

log = logging.getLogger("worker.run")


class Throttle:
    """Decides when each request may start, and learns from how they end."""

    def __init__(
        self,
        settings: Settings,
        stop: StopController,
        stats: RunStats,
        clock: Clock,
        *,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self._stop = stop
        self._stats = stats
        self._clock = clock
        self._max_retry_after_s = settings.max_retry_after_s
        self._token_budget = settings.token_budget
        self.limiter = AdaptiveLimiter(settings.concurrency, initial=1)
        self.learner = Learner(
            self.limiter,
            clock=clock,
            sleep=stop.sleep,
            remaining_jobs=stats.remaining_jobs,
            progress=stats.progress,
            shard=shard,
        )
        self.limiter.raise_to(self.learner.initial_limit)
        self.gate = RetryAfterGate(clock=clock, sleep=stop.sleep)
        self._rpm = self._pacer(settings.rpm)
        self._tpm = self._pacer(settings.tpm)
        self._tokens_estimated = 0
        self._tokens_reported = 0

    def _pacer(self, per_minute: float | None) -> Pacer | None:
        if per_minute is None:
            return None
        return Pacer(per_minute / 60, clock=self._clock, sleep=self._stop.sleep)

    def turn(self, job: Job) -> Turn:
        """`async with throttle.turn(job) as turn:` wraps one attempt of a job."""
        return Turn(self, job)

    async def _take_slot(self, job: Job) -> tuple[int, float]:
        """Wait for the gate, the pacers and a concurrency slot; return the slot's
        congestion epoch and the tokens charged to --tpm.

        Raises:
            RunStopping: the run is stopping; no slot is held.
        """
        budget = self._token_budget
        if budget is not None and self._stats.total_tokens >= budget:
            self._stop.request(
                StopReason.TOKEN_BUDGET,
                f"{self._stats.total_tokens} tokens used of a budget of {budget}",
            )
        rpm, tpm, gate, limiter = self._rpm, self._tpm, self.gate, self.limiter
        stopping = self._stop.stopping
        if rpm is None and tpm is None and self.learner.window is None:
            while True:  # the hot path: nothing paces this run
                if stopping.is_set():
                    raise RunStopping
                await gate.wait()
                epoch = await limiter.acquire()
                if self._window_learned():
                    limiter.release()  # a window was learned meanwhile: keep to it
                    break
                if gate.is_open() and not stopping.is_set():
                    return epoch, 0.0
                limiter.release()  # a 429 closed the gate meanwhile
        while True:
            if self._stop.stopping.is_set():
                raise RunStopping
            window = self.learner.window
            await gate.wait()
            for pacer in (rpm, tpm, window):
                if pacer is not None:
                    await pacer.wait_ready()
            epoch = await limiter.acquire()
            ready = all(p is None or p.is_ready() for p in (rpm, tpm, window))
            if ready and gate.is_open() and not self._stop.stopping.is_set():
                break
            limiter.release()  # a 429 or another worker got there first
        charged = 0.0
        if window is not None:
            window.take()
        if rpm is not None:
            rpm.take()
        if tpm is not None:
            charged = self._tokens_expected(job)
            tpm.take(charged)
        return epoch, charged

    def _window_learned(self) -> bool:
        # A call, not an attribute test: the learner may learn a window while a
        # worker awaits, which a narrowed attribute would hide from the checker.
        return self.learner.window is not None

    def _tokens_expected(self, job: Job) -> float:
        # The estimate, scaled by how far reported usage has differed from
        # estimates so far: a steady under-estimate must not overrun --tpm.
        if self._tokens_estimated == 0:
            return float(job.tokens_est)
        return job.tokens_est * self._tokens_reported / self._tokens_estimated

    def _on_success(self, turn: Turn, reply: ChatReply) -> None:
        tokens = self._stats.add_usage(reply.body.get("usage"), turn._job.model)
        if self._tpm is not None and tokens:
            self._tpm.adjust(tokens - turn._charged)
            self._tokens_estimated += turn._job.tokens_est
            self._tokens_reported += tokens
        self.learner.on_success(turn.latency_s)

    def _on_retryable(self, exc: RetryableError, turn: Turn) -> None:
        if isinstance(exc, RateLimitedError):
            kind = self.learner.on_rate_limited(
                exc.retry_after_s, turn._in_flight_at_send, turn._epoch, turn._started
            )
            log.info(
                "429 (%s): pausing all requests for %.3g s; %d allowed in flight",
                kind,
                exc.retry_after_s,
                self.limiter.limit,
            )
        retry_after_s = exc.retry_after_s
        if retry_after_s is None or retry_after_s <= 0:
            return
        if retry_after_s > self._max_retry_after_s:
            self._stop.request(
                StopReason.RATE_LIMIT_BUDGET,
                f"the API asked to wait {retry_after_s:g} s (over "
                f"--max-retry-after {self._max_retry_after_s:g} s): {exc.message}",
            )
        else:
            self.gate.defer(retry_after_s)


class Turn:
    """One request's turn: entered when it may start, left when it has an answer."""

    __slots__ = (
        "_charged",
        "_epoch",
        "_in_flight_at_send",
        "_job",
        "_started",
        "_throttle",
        "latency_s",
    )

    def __init__(self, throttle: Throttle, job: Job) -> None:
        self._throttle = throttle
        self._job = job
        self._epoch = 0
        self._charged = 0.0
        self._started = 0.0
        self._in_flight_at_send = 0
        self.latency_s = 0.0

    async def __aenter__(self) -> Turn:
        throttle = self._throttle
        self._epoch, self._charged = await throttle._take_slot(self._job)
        self._in_flight_at_send = throttle.limiter.in_flight
        stats = throttle._stats
        stats.requests_sent += 1
        stats.in_flight += 1
        self._started = throttle._clock()
        throttle.learner.sends.append(self._started)
        return self

    def succeeded(self, reply: ChatReply) -> None:
        """Record a 2xx answer: its latency, status and reported usage."""
        throttle = self._throttle
        self.latency_s = throttle._clock() - self._started
        stats = throttle._stats
        stats.statuses[reply.status] += 1
        stats.latency.add(self.latency_s)
        throttle._on_success(self, reply)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        throttle = self._throttle
        throttle._stats.in_flight -= 1
        throttle.limiter.release()
        if isinstance(exc, WorkerError) and exc.status is not None:
            throttle._stats.statuses[exc.status] += 1
        if isinstance(exc, RetryableError):
            throttle._on_retryable(exc, self)
