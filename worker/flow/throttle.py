"""When a request may start: the limiters composed, behind one
`async with throttle.turn(job) as turn:`.

The limiters never read one another; this is the one place they meet. A worker
waits for the Retry-After gate and the rate limiters without holding anything,
takes an in-flight slot only once they would let it go, and gives the slot
back if one of them closed meanwhile (a 429, or another worker's start). So
`in_flight` is always the number of requests at the server, which is what the
learner learns the account's cap from. Leaving the block reports the outcome
to one hook: an answer corrects --tpm by the usage reported and feeds the
learner; a Retry-After is judged once (domain/refusal.py), and that decision,
left on the turn, pauses the gate and teaches the learner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from worker.domain.job import Job
from worker.domain.refusal import SLOT_EXPIRY_S, Refusal, judge
from worker.domain.summary import Learned
from worker.errors import (
    QuotaError,
    RateLimitedError,
    RetryableError,
    TransportError,
)
from worker.flow.clock import Clock, Sleep
from worker.flow.day import DayBudget
from worker.flow.gate import RetryAfterGate
from worker.flow.learn import Board, Learner
from worker.flow.pacing import Pacer, WindowLimiter
from worker.flow.slots import AdaptiveLimiter

log = logging.getLogger("worker.run")


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """What the operator set: the in-flight ceiling, the paces per minute, and
    the longest Retry-After that is a pause (a longer one stops the run)."""

    concurrency: int
    rpm: float | None = None
    tpm: float | None = None
    shard: tuple[int, int] = (0, 1)
    max_pause_s: float = float("inf")
    # After a run that did not end cleanly, its slots may still be held at Mira:
    # the first request goes alone, so that one refusal says so, not three,
    # and that refusal pauses until they free (at most `held_for_s` from now).
    first_alone: bool = False
    held_for_s: float = 0.0
    slot_expiry_s: float = SLOT_EXPIRY_S  # Mira frees a leaked slot so long after
    # True once the input's other shards are done (their slots free); where
    # the shards say what each saw of a window.
    others_done: Callable[[], bool | None] = lambda: None
    board: Board | None = None


class Throttle:
    """Decides when each request may start, and learns from how they end."""

    def __init__(
        self,
        limits: FlowLimits,
        *,
        clock: Clock,
        sleep: Sleep,
        remaining_jobs: Callable[[], int | None] = lambda: None,
        progress: Callable[[], float] = lambda: 0.0,
        day: DayBudget | None = None,
    ) -> None:
        self.clock = clock
        self.day = day  # with --until-done or --daily-reserve
        self.gate = RetryAfterGate(clock=clock, sleep=sleep)
        self.limiter = AdaptiveLimiter(limits.concurrency, initial=1)
        self.learner = Learner(
            self.limiter,
            clock=clock,
            sleep=sleep,
            remaining_jobs=remaining_jobs,
            progress=progress,
            shard=limits.shard,
            slot_expiry_s=limits.slot_expiry_s,
            held_for_s=limits.held_for_s,
            others_done=limits.others_done,
            board=limits.board,
        )
        if not limits.first_alone:
            self.limiter.raise_to(self.learner.initial_limit)
        self._max_pause_s = limits.max_pause_s
        self._rpm = _pacer(limits.rpm, clock, sleep)
        self._tpm = _pacer(limits.tpm, clock, sleep)
        self._tokens_estimated = 0
        self._tokens_reported = 0
        self._window: WindowLimiter | None = None
        self._paced_by: tuple[Pacer | WindowLimiter, ...] = tuple(
            p for p in (self._rpm, self._tpm) if p is not None
        )

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return self.limiter.limit

    @property
    def ceiling(self) -> int:
        """The most ever allowed in flight (--concurrency)."""
        return self.limiter.ceiling

    @property
    def decreases(self) -> int:
        """How often the in-flight limit was cut."""
        return self.limiter.decreases

    def paused_s(self) -> float:
        """Seconds every request is held back by a Retry-After (0: none)."""
        return self.gate.remaining_s()

    def learned(self) -> Learned:
        """What the run learned of the account's limits."""
        return self.learner.learned()

    def turn(self, job: Job) -> Turn:
        """`async with throttle.turn(job) as turn:` wraps one attempt of a job."""
        return Turn(self, job)

    def _paced(self) -> tuple[Pacer | WindowLimiter, ...]:
        # The learner may learn a window at any await: asked anew each round,
        # and built anew only when the window changed (this is the hot path).
        window = self.learner.window
        if window is not self._window:
            self._window = window
            self._paced_by = tuple(
                p for p in (self._rpm, self._tpm, window) if p is not None
            )
        return self._paced_by

    async def admit(self, turn: Turn) -> None:
        """Wait until `turn` may start, then start it: slot held, rates charged."""
        gate, limiter, day = self.gate, self.limiter, self.day
        while True:
            if day is not None:
                await day.ready()
            await gate.wait()
            paced = self._paced()
            for pacer in paced:
                await pacer.wait_ready()
            turn.epoch, turn.in_flight_at_send = await limiter.acquire()
            if (
                gate.is_open()
                and self._paced() is paced
                and all(p.is_ready() for p in paced)
                and (day is None or _day_allows(day, limiter))
            ):
                break
            limiter.release()  # a 429 or another worker got there first
        for pacer in paced:
            cost = self._tokens_expected(turn.job) if pacer is self._tpm else 1.0
            pacer.take(cost)
            if pacer is self._tpm:
                turn.charged = cost
        turn.started = self.clock()
        self.learner.sends.append(turn.started)

    def _tokens_expected(self, job: Job) -> float:
        # The estimate, scaled by how far reported usage has differed from
        # estimates so far: a steady under-estimate must not overrun --tpm.
        if self._tokens_estimated == 0:
            return float(job.tokens_est)
        return job.tokens_est * self._tokens_reported / self._tokens_estimated

    def succeeded(self, turn: Turn, latency_s: float, tokens: int) -> None:
        """The hook for an answer: its latency and the tokens it used."""
        turn.latency_s = latency_s
        if self._tpm is not None and tokens:
            self._tpm.adjust(tokens - turn.charged)
            self._tokens_estimated += turn.job.tokens_est
            self._tokens_reported += tokens
        self.learner.on_success(turn.latency_s, turn.in_flight_at_send, turn.started)
        if self.day is not None:
            self.day.answered()

    def finished(self, turn: Turn, exc: BaseException | None) -> None:
        """The hook for every end of a turn: a Retry-After judged once, its
        decision left on the turn for the retry loop, and the slot back (after
        the limit took in what this end says, so that no waiter is woken into
        a slot Mira still holds)."""
        if isinstance(exc, RetryableError):
            if _leaves_slot_held(exc):
                self.learner.on_leak(turn.started)
            turn.refusal = self._judge(turn, exc)
        self.limiter.release()

    def _judge(self, turn: Turn, exc: RetryableError) -> Refusal | None:
        """Decide what a Retry-After means; pause the gate and teach the
        learner by that decision, unless it stops the run."""
        refused = isinstance(exc, RateLimitedError)
        retry_after_s = exc.retry_after_s
        if retry_after_s is None or (retry_after_s <= 0 and not refused):
            return None
        learner, day = self.learner, self.day
        refusal = judge(
            retry_after_s,
            rate_limited=refused,
            in_flight_at_send=turn.in_flight_at_send,
            proven=learner.proven,
            max_pause_s=self._max_pause_s,
            held_streak=learner.held_streak,
            held_for_s=learner.held_for_s(),
            slot_expiry_s=learner.slot_expiry_s,
            wait_for_day=day is not None and day.can_wait(),
        )
        if day is not None and refusal.kind in ("daily", "monthly"):
            day.give_back()  # refused before Mira counts the day's messages
            if refusal.waits_for_day:
                day.cap_reached()
        if refusal.stop is not None or refusal.waits_for_day:
            return refusal
        if refused:
            refusal = learner.on_refusal(
                refusal, turn.in_flight_at_send, turn.epoch, turn.started
            )
            log.info(
                "429 (%s): pausing all requests for %.3g s; %d allowed in flight",
                refusal.kind,
                refusal.pause_s,
                self.limiter.limit,
            )
        self.gate.defer(refusal.pause_s)
        return refusal


class Turn:
    """One request's turn: entered when it may start, left when it has an answer."""

    __slots__ = (
        "_throttle",
        "charged",
        "epoch",
        "in_flight_at_send",
        "job",
        "latency_s",
        "refusal",
        "started",
    )

    def __init__(self, throttle: Throttle, job: Job) -> None:
        self._throttle = throttle
        self.job = job
        self.epoch = 0  # the congestion epoch its slot was taken in
        self.charged = 0.0  # tokens charged to --tpm at the start
        self.started = 0.0
        self.in_flight_at_send = 0
        self.latency_s = 0.0
        # The throttle's decision about a Retry-After this request drew.
        self.refusal: Refusal | None = None

    async def __aenter__(self) -> Turn:
        await self._throttle.admit(self)
        return self

    def elapsed_s(self) -> float:
        """Seconds since the request started."""
        return self._throttle.clock() - self.started

    def succeeded(self, latency_s: float, tokens: int) -> None:
        """Record an answer after `latency_s` that used `tokens` (as counted)."""
        self._throttle.succeeded(self, latency_s, tokens)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._throttle.finished(self, exc)


def _leaves_slot_held(exc: RetryableError) -> bool:
    """Mira took the request's slot and returned no answer: a connection cut
    after it reached the server, or its 408 at 30 s (a full GPU queue is told
    by the refusal's kind)."""
    if isinstance(exc, TransportError):
        return exc.reached_server
    return exc.status == 408


def _day_allows(day: DayBudget, limiter: AdaptiveLimiter) -> bool:
    """Count the request against the day, with its slot held; give the slot
    back when the day stops the run."""
    try:
        return day.take()
    except QuotaError:
        limiter.release()
        raise


def _pacer(per_minute: float | None, clock: Clock, sleep: Sleep) -> Pacer | None:
    return (
        None if per_minute is None else Pacer(per_minute / 60, clock=clock, sleep=sleep)
    )
