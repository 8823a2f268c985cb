"""What the account allows, learned from its answers: requests in flight, a window.

Mira's 429s carry only a Retry-After, and a failed probe pauses the whole run
for it (5 s for the in-flight cap). So the run starts at the cap MIRA_API.md
documents (3 per user, split between shards), grows past it only when the
remaining work makes the gamble pay, learns the real cap from the first 429 it
draws there, and probes above it rarely, waiting longer after each failed
probe; a millisecond server is no model behind Mira's limits and grows at once.
A 429 whose Retry-After is a sliding window's seconds teaches the window, kept
to after. A refusal with the cap held elsewhere teaches nothing (held.py).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable

from worker.domain.refusal import (
    IN_FLIGHT_RETRY_AFTER_S,
    MIRA_IN_FLIGHT,
    SLOT_EXPIRY_S,
    Refusal,
)
from worker.domain.summary import Learned, Window
from worker.flow import caps
from worker.flow.clock import Clock, Sleep
from worker.flow.held import HeldElsewhere
from worker.flow.pacing import WindowLimiter
from worker.flow.slots import AdaptiveLimiter

log = logging.getLogger("worker.run")


class Learner:
    """Sets the concurrency limit from successes and 429s; keeps the learned window."""

    def __init__(
        self,
        limiter: AdaptiveLimiter,
        *,
        clock: Clock,
        sleep: Sleep,
        remaining_jobs: Callable[[], int | None],
        progress: Callable[[], float],
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._sleep = sleep
        self._remaining_jobs = remaining_jobs
        self._progress = progress
        self._share, self._takeover_at = caps.shard_share(*shard)
        self.cap: int | None = None  # learned: the most that went through
        self.window: WindowLimiter | None = None
        self._proven = 0  # the highest limit a full round trip went through at
        self._streak = 0  # successes since the last 429
        self._beyond = False  # went past the documented cap without a 429
        self._latency_s: float | None = None
        self._successes = 0
        self._probing: int | None = None
        self._failed_probes = 0
        self._next_probe_at = -math.inf
        self._probe_cost_s = IN_FLIGHT_RETRY_AFTER_S
        self._event_epoch = -1
        self._held = HeldElsewhere(limiter)
        self._answers = 0
        self._cap_answers = -1  # answers when the cap was learned
        self._window_learned_at = -math.inf
        self.sends: deque[float] = deque(maxlen=caps.SEND_LOG)

    @property
    def initial_limit(self) -> int:
        """Where the limit starts: this shard's part of the documented cap."""
        return self._share

    # -- successes ------------------------------------------------------------

    def on_success(self, latency_s: float) -> None:
        """A request succeeded after `latency_s`."""
        # A level is proven by a full round trip of successes at it with no 429:
        # counting in flight here overstates what the server held at once.
        self._streak += 1
        self._answers += 1
        if self._answers == 1 and self.cap is None:  # a first request sent alone
            self._limiter.raise_to(self._share)
        self._held.answered()
        if self._streak >= self._limiter.limit:
            self._proven = max(self._proven, self._limiter.limit)
        old = self._latency_s
        self._latency_s = latency_s if old is None else 0.8 * old + 0.2 * latency_s
        if self._probing is not None and self._proven >= self._probing:
            self._probe_held(self._probing)
        limiter = self._limiter
        if limiter.limit >= limiter.ceiling:
            return
        self._successes += 1
        if self._successes >= limiter.limit:  # a round trip's worth at this level
            self._successes = 0
            self._grow()

    def _probe_held(self, level: int) -> None:
        self._probing = None
        self._failed_probes = 0
        if self.cap is not None:
            self.cap = max(self.cap, level)
        elif level > MIRA_IN_FLIGHT:
            self._beyond = True

    def _grow(self) -> None:
        limiter = self._limiter
        level = limiter.limit
        # Above a learned cap one step at a time; past Mira's cap with no 429 a
        # big server, three times as much; else slow start.
        step = 1 if self.cap is not None else 3 * level if self._beyond else level
        free = self._free_level()
        if level < free:
            limiter.raise_to(min(free, level + step))
        elif self._probe_pays(level, step):
            self._probing = min(limiter.ceiling, level + step)
            limiter.raise_to(self._probing)

    def _free_level(self) -> int:
        """Up to this level, growing is no gamble."""
        if self.cap is not None:
            return self.cap
        latency = self._latency_s
        if latency is not None and latency < caps.MODEL_LATENCY_S:
            return self._limiter.ceiling
        if self._progress() >= self._takeover_at:
            return MIRA_IN_FLIGHT  # the larger shards should be done by now
        return self._share

    def _probe_pays(self, level: int, step: int) -> bool:
        """Grow past the free level when the time a success would save outweighs
        the odds of a failure times the run-wide pause it costs."""
        if self._clock() < self._next_probe_at:
            return False
        remaining = self._remaining_jobs()
        if remaining is None:
            return True  # no end in sight: the gamble pays
        left_s = remaining * (self._latency_s or 1.0) / level
        saved_s = left_s * step / (level + step)
        if self.cap is not None:
            odds = caps.ODDS_ABOVE_LEARNED_CAP
        else:
            odds = caps.ODDS_BEYOND_IT if self._beyond else caps.ODDS_AT_DOCUMENTED_CAP
        return saved_s > odds * self._probe_cost_s

    # -- 429s -----------------------------------------------------------------

    @property
    def proven(self) -> int:
        """The most in flight that a full round trip went through at."""
        return self._proven

    @property
    def held_streak(self) -> int:
        """Refusals in a row that found the slots held elsewhere."""
        return self._held.streak

    def on_refusal(
        self,
        refusal: Refusal,
        in_flight_at_send: int,
        epoch: int,
        sent_at: float = -math.inf,
    ) -> None:
        """Learn from a refused request sent at `sent_at` (with the slot epoch
        it was sent in), as the refusal was judged."""
        self._streak = 0
        kind = refusal.kind
        if refusal.held_elsewhere:
            self._held_elsewhere()
        elif kind == "window":
            self._learn_window(refusal.retry_after_s, sent_at)
        elif kind not in ("in_flight", "gpu_queue"):
            pass
        elif epoch == self._limiter.epoch:  # the first 429 of this event
            self._event_epoch = epoch
            self._learn_cap(refusal.retry_after_s, in_flight_at_send)
        elif epoch == self._event_epoch and self.cap is not None:
            # Sent before the cut, answered after: the same event, and the
            # smallest count that drew a 429 is the one that tells.
            self.cap = min(self.cap, max(1, in_flight_at_send - 1))
            self._limiter.cut_to(self.cap, new_event=False)

    def _held_elsewhere(self) -> None:
        restore_to = self._limiter.limit
        if self.cap is not None and self._cap_answers == self._answers:
            # Learned from the same burst, with no answer since: those slots
            # were held elsewhere too, so it is no cap of the account's.
            self.cap = None
            restore_to = max(restore_to, self._share)
        self._held.refused(restore_to=restore_to)

    def learned(self) -> Learned:
        """What was learned, for the summary."""
        window = self.window
        return Learned(
            in_flight=self.cap,
            window=None
            if window is None
            else Window(requests=window.requests, seconds=round(window.window_s, 1)),
        )

    def _learn_cap(self, retry_after_s: float, in_flight_at_send: int) -> None:
        self._probing = None
        self._failed_probes += 1
        cap = max(1, in_flight_at_send - 1)
        backoff_s = caps.PROBE_BACKOFF_S * 2 ** (self._failed_probes - 1)
        if cap < MIRA_IN_FLIGHT:  # below Mira's 3: slots leaked, renewed
            backoff_s = max(backoff_s, SLOT_EXPIRY_S)  # by every acquire
        self._next_probe_at = self._clock() + retry_after_s + backoff_s
        self._probe_cost_s = max(retry_after_s, 1.0)
        if self.cap != cap:
            log.info(
                "learned: the account allows %d requests in flight "
                "(pin it with --concurrency %d)",
                cap,
                cap,
            )
        self.cap = cap
        self._cap_answers = self._answers
        self._limiter.cut_to(cap)

    def _learn_window(self, retry_after_s: float, sent_at: float) -> None:
        now = self._clock()
        window = self.window
        if window is not None and sent_at <= self._window_learned_at:
            return  # sent before the window was learned: the same burst's 429
        self._window_learned_at = now
        if window is None:
            if not self.sends or len(self.sends) == self.sends.maxlen:
                return  # too little or too much history to tell
            # The window filled with this run's own requests; the oldest of them
            # leaves it when the Retry-After is over. That is rounded up to whole
            # seconds, as windows are long: the floor is the window's length.
            window_s = max(1.0, math.floor(now + retry_after_s - self.sends[0]))
            window = WindowLimiter(
                max(1, len(self.sends) - 1),
                window_s,
                clock=self._clock,
                sleep=self._sleep,
            )
            for started in self.sends:
                window.take_at(started)
            self.window = window
        else:
            window.requests = max(1, window.requests - 1)  # it was too generous
        log.info(
            "learned: the account allows %d requests per %.0f s "
            "(pin it with --rpm %.0f)",
            window.requests,
            window.window_s,
            window.requests * 60 / window.window_s,
        )
