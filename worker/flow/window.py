"""A sliding window of requests, learned from evidence and never from one
stray refusal.

Every 429 reads the same; a window's is told apart by what the run's own
sends looked like when it came. A refusal is evidence of a window of N
requests per W seconds when both hold:

- **the window filled early**: N of the run's requests went out within the
  last W seconds, in at most half of W of sending (a stray 429 in a steady
  stream of requests comes after W seconds of sending like any other);
- **nothing contradicts it**: no W seconds of the run's history held more
  than N requests that went through, which a window of N would have refused.

W is the Retry-After itself where the server says the whole window (Mira's
backend), or, where it says the seconds until the oldest request leaves (its
docs), the span from the first request of the run's latest burst to the moment
the server names. A window is never shorter than MIN_WINDOW_S: a Retry-After
of a second or two is a pause. A window learned from a stray, or read wrongly,
is contradicted by the next refusal: a window refusal that comes while the
learned window had room makes the run take the refusal's other reading, or
forget it.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from worker.flow.clock import Clock, Sleep
from worker.flow.pacing import WindowLimiter

log = logging.getLogger("worker.run")

SEND_LOG = 20_000  # starts remembered to learn a window from
# A window must hold at least this many of the run's requests, and last this
# long, to be told from a pause.
MIN_REQUESTS = 10
MIN_WINDOW_S = 5.0
# It filled within half its length, counting a silence (a pause) as at most
# SILENCE_S of sending: the run sent at least twice as fast as it allows.
FILLED_WITHIN = 0.5
SILENCE_S = 1.0
# The run's clock and the server's differ by the network's delay: the learned
# window is kept this much longer.
MARGIN_S = 0.25
# A learned window is forgotten when a window refusal comes with this many
# of its requests or more still free.
ROOM_TO_FORGET = 2


class Board(Protocol):
    """Where the shards of one input say what each saw of a window."""

    def publish(self, requests: int, window_s: float) -> None: ...

    def others(self, window_s: float) -> list[int] | None: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading of a refusal: N requests per W seconds."""

    requests: int
    window_s: float


class WindowEvidence:
    """The run's sends, and the window they prove, if any."""

    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Sleep,
        share: float = 1.0,
        shards: int = 1,
        board: Board | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        # A shard sends its share of the account's requests (its part of the
        # in-flight cap): it reads the account's window from its own count,
        # and keeps to an even part of it while the other shards run.
        self._share = share
        self._shards = shards
        self._whole: int | None = None  # the account's window, while split
        self._board = board
        self._seen = 0  # this shard's own requests in the window it learned
        self._summed = False  # the whole window is the shards' sum
        self._alone_at: float | None = None  # when the other shards were done
        self.sends: deque[float] = deque(maxlen=SEND_LOG)
        self.window: WindowLimiter | None = None
        self._learned_at = -math.inf
        self._read_at = -math.inf  # when the refusal it was read from was sent
        # The other readings of the refusal the window was learned from, tried
        # in turn when the next refusal contradicts it.
        self._alternates: list[Reading] = []

    def explains(self, retry_after_s: float, sent_at: float) -> bool:
        """True when a window, learned or proved by this refusal, explains a
        429 whose Retry-After could be something else's (Mira's full GPU
        queue says 10 s, as a window of 10 s does)."""
        window = self.window
        if window is not None and (
            sent_at <= self._learned_at
            or window.requests - self._count(sent_at - window.window_s, sent_at)
            < ROOM_TO_FORGET
        ):
            return True
        return bool(self._read(retry_after_s, sent_at))

    def refused(self, retry_after_s: float, sent_at: float) -> None:
        """A 429 the judge read as a window's, for a request sent at `sent_at`."""
        counted = self._forget_send(sent_at)
        window = self.window
        if window is not None:
            if sent_at <= self._learned_at:
                # In flight when the window was learned: the same burst. One
                # sent before the refusal it was read from was counted in it.
                if counted and sent_at <= self._read_at:
                    window.requests = max(1, window.requests - 1)
                return
            room = window.requests - self._count(sent_at - window.window_s, sent_at)
            if room < ROOM_TO_FORGET or self._shared():
                # At its edge: the window is real, and a request too generous;
                # or the shards share it, and the others took more of it.
                window.requests = max(1, window.requests - max(1, room))
                self._learned_at = self._clock()
                self._say("the account allows", window)
                return
            log.info(
                "forgot the window of %d requests per %.0f s: a 429 came with %d "
                "of them free, so it was no window's",
                window.requests,
                window.window_s,
                room,
            )
            self.window = None
            if self._alternates:
                self._keep_to(self._alternates.pop(0))
                return
        readings = self._read(retry_after_s, sent_at)
        if readings:
            self._read_at = sent_at
            self._keep_to(readings[0])
            self._alternates = readings[1:]
        # else: a pause, not a rate

    def tick(self, *, alone: bool) -> None:
        """While the shards split a window: once all have said what they saw,
        the account's window is their sum; once the others are done, it is
        this shard's alone."""
        if alone:
            self.others_done()
            return
        window, board = self.window, self._board
        if self._summed or window is None or board is None or self._whole is None:
            return
        window_s = window.window_s - MARGIN_S
        others = board.others(window_s)
        if others is None:
            return
        self._summed = True
        self._whole = self._seen + sum(others)
        # Shards of one input hold about as many jobs each: an even part.
        window.requests = max(1, self._whole // self._shards)
        log.info(
            "the %d shards on the account saw %d requests per %.0f s between them: "
            "this one keeps to %d",
            self._shards,
            self._whole,
            window_s,
            window.requests,
        )

    def others_done(self) -> None:
        """The other shards ended: the whole window is this run's, once their
        last requests have left it."""
        window, whole = self.window, self._whole
        now = self._clock()
        if self._alone_at is None:
            self._alone_at = now
        if window is None or whole is None or now < self._alone_at + window.window_s:
            return
        self._whole = None
        self._shards = 1
        window.requests = max(window.requests, whole)
        self._say("the other shards are done: the run keeps to", window)

    def _shared(self) -> bool:
        """True while other shards may have requests in the window."""
        alone_at = self._alone_at
        if self._shards == 1 and alone_at is None:
            return False
        window = self.window
        return alone_at is None or (
            window is not None and self._clock() < alone_at + 2 * window.window_s
        )

    @property
    def split(self) -> bool:
        """True while the run keeps to its part of a window shared by shards."""
        return self._whole is not None

    def _keep_to(self, reading: Reading) -> None:
        requests = reading.requests
        if self._shards > 1:
            # Until every shard has said what it saw: the whole estimated
            # from this shard's part of the requests.
            self._seen, self._summed = requests, False
            if self._board is not None:
                self._board.publish(requests, reading.window_s)
            whole = max(requests, math.floor(requests / self._share))
            self._whole = whole
            requests = max(1, whole // self._shards)
        window = WindowLimiter(
            requests,
            reading.window_s + MARGIN_S,
            clock=self._clock,
            sleep=self._sleep,
        )
        for started in self.sends:
            window.take_at(started)
        self.window = window
        self._learned_at = self._clock()
        self._say("learned: the account allows", window)

    def _read(self, retry_after_s: float, sent_at: float) -> list[Reading]:
        """The windows this refusal proves, read the backend's way first."""
        proved = []
        for window_s in (retry_after_s, self._burst_window_s(retry_after_s, sent_at)):
            if window_s is None or window_s < MIN_WINDOW_S:
                continue
            requests = self._count(sent_at - window_s, sent_at)
            if self._filled_early(window_s, sent_at, requests) and self._uncontradicted(
                window_s, requests, sent_at
            ):
                proved.append(Reading(requests, window_s))
        return proved

    def _burst_window_s(self, retry_after_s: float, sent_at: float) -> float | None:
        """The docs' reading: the oldest request of the window is the first of
        the run's latest burst (after a silence as long as the Retry-After),
        and it leaves when the server says."""
        sends = self.sends
        if not sends:
            return None
        times = list(sends)
        end = bisect.bisect_left(times, sent_at)
        first = 0
        for i in range(end - 1, 0, -1):
            if times[i] - times[i - 1] >= retry_after_s:
                first = i
                break
        window_s = math.floor(sent_at + retry_after_s - times[first])
        return window_s if window_s > retry_after_s else None

    def _filled_early(self, window_s: float, sent_at: float, requests: int) -> bool:
        if requests < MIN_REQUESTS:
            return False
        times = list(self.sends)
        lo = bisect.bisect_left(times, sent_at - window_s)
        hi = bisect.bisect_right(times, sent_at)
        sending_s = sum(
            min(b - a, SILENCE_S)
            for a, b in zip(times[lo:hi], [*times[lo + 1 : hi], sent_at], strict=True)
        )
        return sending_s <= FILLED_WITHIN * window_s

    def _uncontradicted(self, window_s: float, requests: int, sent_at: float) -> bool:
        """No `window_s` of the history held more than `requests` sends."""
        times = list(self.sends)
        end = bisect.bisect_right(times, sent_at)
        start = 0
        for i in range(end):
            while times[start] <= times[i] - window_s:
                start += 1
            if i - start + 1 > requests:
                return False
        return True

    def _count(self, since: float, until: float) -> int:
        """The run's sends from `since` to `until`, both included (the refused
        one is no longer among them)."""
        times = list(self.sends)
        return bisect.bisect_right(times, until) - bisect.bisect_left(times, since)

    def _forget_send(self, sent_at: float) -> bool:
        """A refused request is not one the window let through; True when it
        was among the sends."""
        sends = self.sends
        for back in range(1, min(len(sends), 64) + 1):
            if sends[-back] == sent_at:
                del sends[-back]
                return True
        return False

    def _say(self, what: str, window: WindowLimiter) -> None:
        log.info(
            "%s %d requests per %.0f s (pin it with --rpm %.0f)",
            what,
            window.requests,
            window.window_s,
            window.requests * 60 / window.window_s,
        )
