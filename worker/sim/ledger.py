"""What the simulator saw, for tests and rehearsals to check: every arrival, each
distinct body and how often, answers delivered twice, and requests that arrived
during a pause the server had asked for."""

from __future__ import annotations

from collections import Counter

from worker.sim.faults import SimStats

# A request already on the wire when a 429 left is not one sent into the pause.
RETRY_AFTER_GRACE_S = 0.05
_PAUSES_KEPT = 64


class Ledger:
    """The simulator's counts (`stats`) and the memory they need."""

    __slots__ = (
        "_pauses",
        "_succeeded",
        "answers_in",
        "conversations",
        "seen",
        "stats",
    )

    def __init__(self, limited: Counter[str], account: Counter[str]) -> None:
        self.stats = SimStats()
        self.stats.limited = limited
        self.stats.account = account
        self.seen: Counter[bytes] = Counter()
        # requests per conversation (a job's first user message): the turn a
        # scripted answer (x_sim_forms) is on
        self.conversations: Counter[bytes] = Counter()
        self.answers_in: Counter[bytes] = Counter()  # the most it carried
        self._succeeded: set[bytes] = set()
        self._pauses: list[tuple[float, float]] = []

    def arrived(self, now: float) -> None:
        """A completion request arrived."""
        stats = self.stats
        stats.requests += 1
        stats.first_arrival_at = stats.first_arrival_at or now
        stats.last_arrival_at = now
        if any(start <= now < end for start, end in self._pauses):
            stats.during_retry_after += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)

    def left(self) -> None:
        """A completion request was answered (or cut)."""
        self.stats.in_flight -= 1

    def paused(self, now: float, retry_after_s: float) -> None:
        """A refusal asked every request to wait `retry_after_s` from `now`."""
        self._pauses.append((now + RETRY_AFTER_GRACE_S, now + retry_after_s))
        del self._pauses[:-_PAUSES_KEPT]

    def delivered(self, raw: bytes, *, client_gone: bool) -> None:
        """A real answer to the body `raw` went out (unless its client had gone)."""
        if client_gone:
            # The client gave up on this request (it was cancelled): it never
            # got the answer, so sending it again is not a duplicate.
            self.stats.undelivered += 1
            return
        if raw in self._succeeded:
            self.stats.duplicate_successes += 1
        self._succeeded.add(raw)
