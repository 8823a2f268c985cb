"""What the account allows, learned from evidence: requests in flight, a window.

Mira's 429s carry only a Retry-After; each one pauses the whole run for it (5 s
for the in-flight cap) and uses one of the day's messages. So the run starts
at the cap MIRA_API.md documents (3 per user, split between shards), and:

- grows past it only when the remaining work makes the gamble pay, one
  request at a time, so that a probe above a cap costs at most one refusal;
  the cap is learned from the first in-flight refusal, at the number that was
  in flight when it was granted its slot, and a failed probe is never tried
  again in the run; a millisecond server is no model behind Mira's limits and
  grows at once;
- plans around the slots its own cut requests leave held at Mira (held.py),
  with fewer in flight until they expire, instead of meeting them with 429s;
- learns a sliding window only from refusals that prove one (window.py), and
  forgets it when a refusal contradicts it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from worker.domain.refusal import (
    IN_FLIGHT_RETRY_AFTER_S,
    MIRA_IN_FLIGHT,
    SLOT_EXPIRY_S,
    Refusal,
)
from worker.domain.summary import Learned, Window
from worker.flow import caps
from worker.flow.clock import Clock, Sleep
from worker.flow.held import HeldSlots
from worker.flow.pacing import WindowLimiter
from worker.flow.slots import AdaptiveLimiter
from worker.flow.window import Board, WindowEvidence

__all__ = ["Board", "Learner"]

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
        slot_expiry_s: float = SLOT_EXPIRY_S,
        held_for_s: float = 0.0,
        others_done: Callable[[], bool | None] = lambda: None,
        board: Board | None = None,
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._remaining_jobs = remaining_jobs
        self._progress = progress
        self._share, self._takeover_at = caps.shard_share(*shard)
        self.cap: int | None = None  # learned: the most that went through
        self._proven = 0  # the most requests in flight a round trip went through at
        self._passes = 0  # answers above it, towards proving the next level
        self._above: float = math.inf  # the least level they were let in at
        self._beyond = False  # went past the documented cap without a 429
        self._latency_s: float | None = None
        self._successes = 0
        self._probing: int | None = None
        self._probes_over = False  # a probe failed: none again in this run
        self._takeover_failed = False  # the other shards were not done, after all
        self._others_done = others_done
        self._next_probe_at = -math.inf  # after a cut that was no probe
        self._event_epoch = -1
        self._held = HeldSlots(
            limiter, clock=clock, expiry_s=slot_expiry_s, held_for_s=held_for_s
        )
        self._answers = 0
        self._cap_answers = -1  # answers when the cap was learned
        self._windows = WindowEvidence(
            clock=clock,
            sleep=sleep,
            share=self._share / MIRA_IN_FLIGHT,
            shards=shard[1],
            board=board,
        )

    @property
    def initial_limit(self) -> int:
        """Where the limit starts: this shard's part of the documented cap."""
        return self._share

    @property
    def window(self) -> WindowLimiter | None:
        """The window learned and kept to, if any."""
        return self._windows.window

    @property
    def sends(self) -> deque[float]:
        """When the run's requests started (a window is learned from them)."""
        return self._windows.sends

    @property
    def latency_s(self) -> float | None:
        """The answers' latency, smoothed (None before the first)."""
        return self._latency_s

    # -- successes ------------------------------------------------------------

    def on_success(
        self, latency_s: float, position: int = 1, sent_at: float = 0.0
    ) -> None:
        """A request sent at `sent_at`, with `position` of the run's requests
        at the server when it was let in (itself included), succeeded after
        `latency_s`."""
        self._answers += 1
        held = self._held
        held.went_through(position, sent_at)
        held.acquired(sent_at)
        if self._answers == 1 and self.cap is None:
            # A first request sent alone after a run that did not end cleanly:
            # some of its slots may be held yet, so one more at a time.
            self._limiter.raise_to(min(self._share, 2))
        held.answered(sent_at, position)
        self._keep_to_held()
        self._prove(position)
        old = self._latency_s
        self._latency_s = latency_s if old is None else 0.8 * old + 0.2 * latency_s
        if self._probing is not None and self._proven >= self._probing:
            self._probe_held(self._probing)
        if self._windows.split:
            self._windows.tick(alone=self._others_done() is True)
        limiter = self._limiter
        if limiter.limit >= limiter.ceiling:
            return
        self._successes += 1
        if self._successes >= limiter.limit:  # a round trip's worth at this level
            self._successes = 0
            self._grow()

    def _prove(self, position: int) -> None:
        """A level is proven by a round trip's worth of answers at it: as many
        answers let in with at least that many of the run's requests in flight
        as the level, with no in-flight refusal between. (One such answer may
        have been let in while another's answer was on its way back, which
        held no slot at the server any more; a round trip of them cannot.)"""
        if position <= self._proven:
            return
        self._above = min(self._above, position)
        self._passes += 1
        if self._passes >= self._above:
            self._proven = int(self._above)
            self._reset_proof()

    def _reset_proof(self) -> None:
        self._passes = 0
        self._above = math.inf

    def _probe_held(self, level: int) -> None:
        self._probing = None
        if self.cap is not None:
            self.cap = max(self.cap, level)
        elif level > MIRA_IN_FLIGHT:
            self._beyond = True

    def _grow(self) -> None:
        if self._held.episode():
            return  # slots held elsewhere: the held slots' own asks decide
        limiter = self._limiter
        level = limiter.limit
        free = self._free_level()
        if level < free:
            # Up to what is known to go through: slow start.
            limiter.raise_to(min(free, 2 * level))
            return
        if self._probing is not None:
            return  # one probe at a time: the last one is not settled yet
        # Past Mira's cap with no 429, a big server: three times as much. Else
        # a probe is one request more, so that it costs one refusal at most.
        step = 3 * level if self._beyond and self.cap is None else 1
        if self._probe_pays(level, step):
            self._probing = min(limiter.ceiling, level + step)
            limiter.raise_to(self._probing)

    def _fast(self) -> bool:
        """The server answers in milliseconds: no model behind Mira's limits."""
        latency = self._latency_s
        return latency is not None and latency < caps.MODEL_LATENCY_S

    def _mira_like(self) -> bool:
        """A server with Mira's cap and a model's latency, as far as the run knows."""
        return (
            not self._beyond and not self._fast() and (self.cap or 0) <= MIRA_IN_FLIGHT
        )

    def _work_left_s(self) -> float | None:
        """The remaining jobs' latency, one after another (None: no end known)."""
        remaining = self._remaining_jobs()
        return None if remaining is None else remaining * (self._latency_s or 1.0)

    def _free_level(self) -> int:
        """Up to this level, growing is no gamble."""
        if self.cap is not None:
            level = self.cap
        elif self._fast():
            return self._limiter.ceiling
        elif (done := self._others_done()) or (
            done is None
            and not self._takeover_failed
            and self._progress() >= self._takeover_at
        ):
            # The other shards are done (their summaries say so), or, where
            # this machine cannot see them, should be.
            level = MIRA_IN_FLIGHT
        else:
            level = self._share
        if self._mira_like():
            level = min(level, max(1, MIRA_IN_FLIGHT - self._held.own()))
        return level

    def _keep_to_held(self) -> None:
        """No more in flight than the slots the run's cut requests left free."""
        if self._mira_like() and (own := self._held.own()):
            self._limiter.cut_to(max(1, MIRA_IN_FLIGHT - own), new_event=False)

    def _probe_pays(self, level: int, step: int) -> bool:
        """Grow past the free level when the time a success would save outweighs
        the odds of a failure times the run-wide pause it costs."""
        if self._probes_over or self._held.own():
            return False
        if self._share < MIRA_IN_FLIGHT and self.cap is None and not self._beyond:
            return False  # a shard: the others hold the rest of Mira's cap
        if self._clock() < self._next_probe_at:
            return False
        work_s = self._work_left_s()
        if work_s is None:
            return True  # no end in sight: the gamble pays
        saved_s = work_s / level * step / (level + step)
        if self.cap is not None:
            odds = caps.ODDS_ABOVE_LEARNED_CAP
        else:
            odds = caps.ODDS_BEYOND_IT if self._beyond else caps.ODDS_AT_DOCUMENTED_CAP
        return saved_s > odds * IN_FLIGHT_RETRY_AFTER_S

    # -- requests that gave their slot no answer back -----------------------------

    def on_leak(self, sent_at: float) -> None:
        """A request took a slot at Mira and gave no answer back (a cut
        connection, a 408, a full GPU queue): the slot stays held."""
        if self._held.leaked(sent_at):
            self._keep_to_held()

    def held_for_s(self) -> float:
        """How long the slots the run knows to be held stay held."""
        return self._held.held_for_s()

    @property
    def slot_expiry_s(self) -> float:
        """How long after the last acquire Mira frees a leaked slot."""
        return self._held.expiry_s

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
    ) -> Refusal:
        """Learn from a refused request sent at `sent_at` (with the slot epoch
        it was sent in), as the refusal was judged; return it as learned (a
        Retry-After of 10 s that a window explains is the window's)."""
        kind = refusal.kind
        if kind == "gpu_queue" and self._windows.explains(
            refusal.retry_after_s, sent_at
        ):
            # A window of 10 s says what a full GPU queue says: the run's own
            # requests tell which.
            refusal = replace(refusal, kind="window")
            kind = "window"
        if refusal.held_elsewhere:
            ahead = in_flight_at_send - 1
            if ahead and self._waits_out(ahead):
                # Every acquire renews Mira's counter of held slots: they free
                # only after a silence as long as their expiry.
                ahead = 0
                refusal = replace(refusal, pause_s=self._held.expiry_s)
            self._held_elsewhere(in_flight_at_send, ahead)
        elif kind == "window":
            self._windows.refused(refusal.retry_after_s, sent_at)
        elif kind != "in_flight":
            pass  # a full GPU queue is the server's load, no limit of the account's
        elif epoch == self._limiter.epoch:  # the first 429 of this event
            self._event_epoch = epoch
            self._learn_cap(in_flight_at_send)
        elif epoch == self._event_epoch and self.cap is not None:
            # Sent before the cut, answered after: the same event, and the
            # smallest count that drew a 429 is the one that tells.
            self.cap = min(self.cap, max(1, in_flight_at_send - 1))
            self._limiter.cut_to(self.cap, new_event=False)
        return refusal

    def _waits_out(self, ahead: int) -> bool:
        """With `ahead` of Mira's slots going through and the rest held: is a
        silence until the held ones expire quicker than the remaining work
        at `ahead` in flight? (Not for a shard: its siblings hold the rest.)"""
        if self._share < MIRA_IN_FLIGHT:
            return False
        work_s = self._work_left_s()
        if work_s is None:
            return True  # no end in sight
        return work_s / ahead - work_s / MIRA_IN_FLIGHT > self._held.expiry_s

    def _held_elsewhere(self, in_flight_at_send: int, ahead: int) -> None:
        restore_to = self._limiter.limit
        if self.cap is not None and self._cap_answers == self._answers:
            # Learned from the same burst, with no answer since: those slots
            # were held elsewhere too, so it is no cap of the account's.
            self.cap = None
            restore_to = max(restore_to, self._share)
        above = None
        if in_flight_at_send > max(self._proven, 1) and self._share < MIRA_IN_FLIGHT:
            # A shard growing past what went through (taking over from shards
            # that are not done): they hold the rest. Back below it, and no
            # such try again. (A whole run's held slots free at their expiry.)
            above = in_flight_at_send - 1
            self._probes_over = self._takeover_failed = True
        self._held.refused(restore_to=restore_to, at_most=above, ahead=ahead)

    def learned(self) -> Learned:
        """What was learned, for the summary."""
        window = self.window
        return Learned(
            in_flight=self.cap,
            window=None
            if window is None
            else Window(requests=window.requests, seconds=round(window.window_s, 1)),
        )

    def _learn_cap(self, in_flight_at_send: int) -> None:
        if self._probing is not None or in_flight_at_send > max(
            self._proven, MIRA_IN_FLIGHT
        ):
            if not self._probes_over:
                log.info(
                    "a probe above %d in flight was refused: none again in this run",
                    in_flight_at_send - 1,
                )
            self._probes_over = True
        self._probing = None
        self._reset_proof()
        # A cut at a level that went through before (others on the account):
        # no probe back above it for a while.
        self._next_probe_at = self._clock() + caps.PROBE_BACKOFF_S
        cap = max(1, in_flight_at_send - 1)
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
