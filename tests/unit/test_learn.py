"""What the run learns about the account's limits, on fake time."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock
from worker.domain.refusal import Refusal, judge
from worker.flow.caps import shard_share
from worker.flow.learn import Learner
from worker.flow.slots import AdaptiveLimiter

LLM_S = 0.3  # Mira's answers take this long
FAST_S = 0.001  # nginx on loopback


class Account:
    """A learner with a job count and progress the test controls."""

    def __init__(
        self, ceiling: int = 16, jobs: int | None = 150, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.clock = FakeClock()
        self.limiter = AdaptiveLimiter(ceiling, initial=1)
        self.remaining = jobs
        self.done = 0.0
        self.learner = Learner(
            self.limiter,
            clock=self.clock,
            sleep=self.clock.sleep,
            remaining_jobs=lambda: self.remaining,
            progress=lambda: self.done,
            shard=shard,
        )
        self.limiter.raise_to(self.learner.initial_limit)

    def succeed(self, n: int, latency_s: float) -> None:
        for _ in range(n):
            self.learner.on_success(latency_s)

    def refuse(
        self,
        retry_after_s: float,
        in_flight_at_send: int,
        epoch: int | None = None,
        sent_at: float = float("-inf"),
    ) -> Refusal:
        """A 429, judged as the throttle judges it, then learned from."""
        learner = self.learner
        refusal = judge(
            retry_after_s,
            rate_limited=True,
            in_flight_at_send=in_flight_at_send,
            proven=learner.proven,
            max_pause_s=300,
            held_streak=learner.held_streak,
        )
        if epoch is None:
            epoch = self.limiter.epoch
        learner.on_refusal(refusal, in_flight_at_send, epoch, sent_at)
        return refusal


@pytest.mark.parametrize(
    ("shard", "share"),
    [((0, 1), 3), ((0, 2), 2), ((1, 2), 1), ((0, 3), 1), ((2, 3), 1), ((3, 4), 1)],
)
def test_shards_split_the_documented_cap(shard: tuple[int, int], share: int) -> None:
    assert shard_share(*shard)[0] == share


def test_a_short_run_against_a_model_stays_at_the_documented_cap() -> None:
    account = Account(jobs=150)
    account.succeed(300, LLM_S)
    assert account.limiter.limit == 3


def test_a_long_run_probes_and_grows_past_it_when_nothing_refuses() -> None:
    account = Account(ceiling=256, jobs=10_000)
    account.succeed(2000, LLM_S)
    assert account.limiter.limit == 256


def test_a_fast_server_is_no_model_and_grows_at_once() -> None:
    account = Account(ceiling=64, jobs=100)
    account.succeed(200, FAST_S)
    assert account.limiter.limit == 64


def test_an_in_flight_429_teaches_the_cap_from_the_smallest_count_refused() -> None:
    account = Account(ceiling=64, jobs=10_000)
    account.succeed(6, LLM_S)
    assert account.limiter.limit == 6  # probed: the gamble paid on paper
    epoch = account.limiter.epoch
    assert account.refuse(5, 6, epoch).kind == "in_flight"
    assert account.refuse(5, 4, epoch).kind == "in_flight"
    assert account.learner.cap == 3
    assert account.limiter.limit == 3
    assert account.limiter.decreases == 1  # one event, one cut


def test_after_a_failed_probe_the_next_waits_and_the_wait_grows() -> None:
    account = Account(ceiling=64, jobs=100_000)
    account.succeed(6, LLM_S)
    account.refuse(5, 4)
    account.succeed(100, LLM_S)
    assert account.limiter.limit == 3  # no probe during the backoff
    account.clock.now += 5 + 31
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 4  # one probe, one step
    account.refuse(5, 4)
    account.clock.now += 5 + 31
    account.succeed(10, LLM_S)
    assert account.limiter.limit == 3  # the second wait is twice as long
    account.clock.now += 31
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 4


def test_a_window_429_teaches_the_window_from_the_runs_own_requests() -> None:
    account = Account(jobs=100)
    for _ in range(21):
        account.learner.sends.append(account.clock.now)
        account.clock.now += 0.1
    account.succeed(3, LLM_S)
    # 20 went through in 2 s; the window frees in 3 s: 20 per 5 s.
    assert account.refuse(3, 3).kind == "window"
    window = account.learner.window
    assert window is not None
    assert window.requests == 20
    assert window.window_s == 5.0  # 5.1 s measured; Retry-After rounds up
    assert not window.is_ready()
    assert account.limiter.limit == 3  # a rate limit is not a concurrency limit
    learned = account.learner.learned().window
    assert learned is not None
    assert learned.requests == 20


def test_a_smaller_shard_takes_the_freed_slots_once_the_others_should_be_done() -> None:
    account = Account(jobs=75, shard=(1, 2))
    assert account.limiter.limit == 1
    account.succeed(20, LLM_S)
    assert account.limiter.limit == 1
    account.done = 0.61  # the larger shard, twice as fast, is done
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 3


def test_429s_of_the_burst_that_taught_the_window_do_not_shrink_it() -> None:
    account = Account(jobs=100)
    for _ in range(21):
        account.learner.sends.append(account.clock.now)
        account.clock.now += 0.1
    account.succeed(3, LLM_S)
    burst_sent_at = account.clock.now - 0.05
    for _ in range(3):  # three requests were in flight when the window closed
        account.refuse(3, 3, sent_at=burst_sent_at)
    window = account.learner.window
    assert window is not None
    assert window.requests == 20
    account.clock.now += 5
    account.refuse(2, 3, sent_at=account.clock.now)
    assert window.requests == 19  # sent after the window was learned: too generous


def test_only_mira_s_in_flight_refusal_below_3_is_held_elsewhere() -> None:
    account = Account(jobs=200)
    refusal = account.refuse(5, 1)
    assert refusal.held_elsewhere
    assert (refusal.kind, refusal.pause_s, refusal.uses_attempt) == (
        "in_flight",
        5,
        False,
    )
    assert account.refuse(5, 1).pause_s == 10  # the pause grows while they are held
    assert account.limiter.limit == 1  # one request at a time asks
    other = Account(jobs=200)
    refusal = other.refuse(2, 2)
    assert refusal.kind == "in_flight"  # another server's cap: learned as before
    assert not refusal.held_elsewhere
    assert refusal.pause_s == 2
    assert other.learner.cap == 1
