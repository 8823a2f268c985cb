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
        """`n` answers, each with as many requests at the server as allowed."""
        for _ in range(n):
            self.learner.on_success(latency_s, self.limiter.limit, self.clock.now)

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
            held_for_s=learner.held_for_s(),
            slot_expiry_s=learner.slot_expiry_s,
        )
        if epoch is None:
            epoch = self.limiter.epoch
        return learner.on_refusal(refusal, in_flight_at_send, epoch, sent_at)


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


def test_a_probe_above_the_documented_cap_is_one_request_and_fails_once() -> None:
    account = Account(ceiling=64, jobs=10_000)
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 4  # one more: a refusal at most
    assert account.refuse(5, 4).kind == "in_flight"
    assert account.learner.cap == 3
    assert account.limiter.limit == 3
    assert account.limiter.decreases == 1
    account.clock.now += 3600
    account.succeed(1000, LLM_S)
    assert account.limiter.limit == 3  # a failed probe is never tried again


def test_one_answer_above_a_level_does_not_prove_it_a_round_trip_does() -> None:
    account = Account(ceiling=64, jobs=10_000)
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 4  # the probe
    # Let in as the 4th while another answer was on its way back: that one
    # held no slot at the server any more, so it proves nothing yet.
    account.learner.on_success(LLM_S, 4, account.clock.now)
    assert account.learner.proven == 3
    assert account.limiter.limit == 4  # no more than the one probe
    account.succeed(3, LLM_S)  # a round trip's worth at 4: it holds
    assert account.learner.proven == 4
    account.succeed(8, LLM_S)
    assert account.limiter.limit > 4  # past Mira's cap: a server that is not Mira


def test_a_refusal_starts_the_proof_again() -> None:
    account = Account(ceiling=64, jobs=10_000)
    account.succeed(3, LLM_S)
    account.learner.on_success(LLM_S, 4, account.clock.now)
    account.learner.on_success(LLM_S, 4, account.clock.now)
    account.refuse(5, 4)
    assert account.learner.cap == 3
    account.learner.on_success(LLM_S, 4, account.clock.now)
    account.learner.on_success(LLM_S, 4, account.clock.now)
    assert account.learner.proven == 3


def test_the_cap_is_learned_at_the_position_granted_not_at_the_count_after() -> None:
    account = Account(ceiling=64, jobs=10_000)
    account.succeed(3, LLM_S)
    epoch = account.limiter.epoch
    # Refusals of one burst, in any order: the smallest position tells.
    account.refuse(5, 6, epoch)
    account.refuse(5, 4, epoch)
    assert account.learner.cap == 3


def test_a_cut_that_was_no_probe_lets_the_run_probe_again_later() -> None:
    account = Account(ceiling=64, jobs=100)
    account.succeed(30, LLM_S)
    assert account.limiter.limit == 3  # a short run: no probe
    account.remaining = 100_000
    account.refuse(5, 3)  # others took a slot: a cut at a proven level
    assert account.limiter.limit == 2
    account.succeed(20, LLM_S)
    assert account.limiter.limit == 2  # no probe during the backoff
    account.clock.now += 31
    account.succeed(4, LLM_S)
    assert account.limiter.limit == 3  # one step


def sends(account: Account, count: int, every_s: float) -> None:
    """`count` requests sent `every_s` apart, and answered."""
    for _ in range(count):
        account.learner.sends.append(account.clock.now)
        account.clock.now += every_s
    account.succeed(count, LLM_S)


def test_a_window_is_learned_from_a_refusal_that_proves_one() -> None:
    account = Account(jobs=300)
    sends(account, 40, 0.1)  # 40 in 4 s, then the 41st is refused
    refused_at = account.clock.now
    account.learner.sends.append(refused_at)
    # Mira's backend: the whole window as the Retry-After.
    assert account.refuse(10, 3, sent_at=refused_at).kind == "window"
    window = account.learner.window
    assert window is not None
    assert window.requests == 40
    assert window.window_s == pytest.approx(10.25)
    assert account.limiter.limit == 3  # a rate limit is not a concurrency limit
    learned = account.learner.learned().window
    assert learned is not None
    assert learned.requests == 40


def test_the_docs_reading_a_window_from_the_seconds_until_the_oldest_leaves() -> None:
    account = Account(jobs=300)
    sends(account, 40, 0.1)
    # The docs: the seconds until the oldest request leaves (at 10 s). A
    # window of 6 s would not have filled in under half of it.
    account.refuse(6, 3, sent_at=account.clock.now)
    window = account.learner.window
    assert window is not None
    assert window.requests == 40
    assert window.window_s == pytest.approx(10.25)


def test_a_stray_429_in_a_steady_stream_is_a_pause_not_a_rate() -> None:
    account = Account(jobs=300)
    sends(account, 200, 0.1)
    # (A Retry-After longer than the run has lasted could be a window that
    # filled from its first request: that one would be learned, then
    # forgotten at the next refusal that contradicts it.)
    for retry_after in (2, 5, 10, 12):
        account.refuse(retry_after, 3, sent_at=account.clock.now)
        assert account.learner.window is None
    assert account.learner.learned().window is None


def test_a_refusal_with_room_in_the_window_makes_the_run_forget_it() -> None:
    account = Account(jobs=300)
    sends(account, 40, 0.1)
    account.refuse(10, 3, sent_at=account.clock.now)
    assert account.learner.window is not None
    for _ in range(2):  # its other reading (40 per 14 s), then nothing
        account.clock.now += 15
        sends(account, 5, 0.1)
        account.refuse(12, 3, sent_at=account.clock.now)  # most free: no window's
    assert account.learner.window is None


def test_a_refusal_at_the_windows_edge_makes_it_one_smaller() -> None:
    account = Account(jobs=300)
    sends(account, 40, 0.1)
    account.refuse(10, 3, sent_at=account.clock.now - 0.05)  # the same burst
    window = account.learner.window
    assert window is not None
    account.refuse(10, 3, sent_at=account.clock.now - 0.05)
    assert window.requests == 40
    account.clock.now += 10.5
    sends(account, 40, 0.1)
    account.refuse(10, 3, sent_at=account.clock.now)
    assert window.requests == 39


def test_a_smaller_shard_takes_the_freed_slots_once_the_others_should_be_done() -> None:
    account = Account(jobs=75, shard=(1, 2))
    assert account.limiter.limit == 1
    account.succeed(20, LLM_S)
    assert account.limiter.limit == 1
    account.done = 0.61  # the larger shard, twice as fast, is done
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 3


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
    assert refusal.kind != "in_flight"  # a stray below Mira's cap: a pause
    assert not refusal.held_elsewhere
    assert refusal.pause_s == 2
    assert other.learner.cap is None
    refusal = other.refuse(2, 4)  # above Mira's cap and all that went through
    assert refusal.kind == "in_flight"  # another server's cap: learned as before
    assert other.learner.cap == 3


def test_slots_its_own_cut_requests_leave_held_mean_fewer_in_flight() -> None:
    account = Account(jobs=300)
    account.succeed(6, LLM_S)
    learner, limiter = account.learner, account.limiter
    learner.on_leak(account.clock.now)
    assert limiter.limit == 2
    learner.on_leak(account.clock.now)
    assert limiter.limit == 1
    assert learner.held_for_s() == pytest.approx(300)
    learner.on_leak(account.clock.now)  # all three: one request asks alone
    assert limiter.limit == 1
    refusal = account.refuse(5, 1)
    assert refusal.held_elsewhere
    assert refusal.pause_s == pytest.approx(300)  # until they free, no 429s before
    account.clock.now += 301
    assert learner.held_for_s() == 0
    account.succeed(6, LLM_S)
    assert limiter.limit == 3


def test_a_server_that_frees_cut_requests_slots_is_believed() -> None:
    account = Account(jobs=300)
    account.succeed(6, LLM_S)
    account.learner.on_leak(account.clock.now)
    assert account.limiter.limit == 2
    account.clock.now += 1
    # Three at the server with it, sent after the cut: the slot was free.
    account.learner.on_success(LLM_S, 3, account.clock.now)
    assert account.learner.held_for_s() == 0
    account.learner.on_leak(account.clock.now)  # no longer counted
    assert account.learner.held_for_s() == 0


def test_the_held_pause_grows_but_never_past_the_slots_expiry() -> None:
    pauses = [
        judge(
            5,
            rate_limited=True,
            in_flight_at_send=1,
            proven=3,
            max_pause_s=300,
            held_streak=streak,
            slot_expiry_s=20,
        ).pause_s
        for streak in range(6)
    ]
    assert pauses == [5, 10, 20, 20, 20, 20]


def test_slots_held_elsewhere_leave_the_run_those_that_went_through() -> None:
    account = Account(jobs=300)
    account.succeed(10, LLM_S)
    # Two slots held by an earlier run: the request with one of ours ahead
    # of it is refused, and the one ahead still goes through.
    refusal = account.refuse(5, 2)
    assert refusal.held_elsewhere
    assert refusal.pause_s == 5  # the refusal's own: no long wait
    assert account.limiter.limit == 1
    assert account.learner.cap is None
    account.clock.now += 4
    account.succeed(3, LLM_S)
    assert account.limiter.limit == 1  # kept to the slot that works
    account.clock.now += 1  # the first ask, after Mira's 5 s: one more, once
    account.succeed(1, LLM_S)
    assert account.limiter.limit == 2
    assert account.refuse(5, 2).held_elsewhere  # held yet
    assert account.limiter.limit == 1
    account.clock.now += 11
    account.succeed(1, LLM_S)
    assert account.limiter.limit == 2
    account.learner.on_success(LLM_S, 2, account.clock.now)  # they freed
    assert account.limiter.limit == 3


def test_a_shard_that_grows_into_held_slots_backs_off_for_good() -> None:
    account = Account(jobs=75, shard=(1, 2))
    account.succeed(10, LLM_S)
    account.done = 0.61  # the takeover guess: the larger shard should be done
    for _ in range(3):
        account.learner.on_success(LLM_S, 1, account.clock.now)
    assert account.limiter.limit == 3
    refusal = account.refuse(5, 2)  # it was not: its requests hold the slots
    assert refusal.held_elsewhere
    account.clock.now += 5
    account.succeed(10, LLM_S)
    assert account.limiter.limit == 1  # no second try


class Board:
    """The other shard's word, as a test sets it."""

    def __init__(self) -> None:
        self.mine: tuple[int, float] | None = None
        self.theirs: list[int] | None = None

    def publish(self, requests: int, window_s: float) -> None:
        self.mine = (requests, window_s)

    def others(self, window_s: float) -> list[int] | None:
        return self.theirs


def test_shards_keep_to_an_even_part_of_the_window_they_share() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(16, initial=2)
    board = Board()
    alone = [False]
    learner = Learner(
        limiter,
        clock=clock,
        sleep=clock.sleep,
        remaining_jobs=lambda: 150,
        progress=lambda: 0.1,
        shard=(0, 2),
        board=board,
        others_done=lambda: alone[0],
    )
    for _ in range(28):  # its 2 of the 3 slots: 28 of the window's 40
        learner.sends.append(clock.now)
        clock.now += 0.1
    learner.on_success(LLM_S, 2, clock.now)
    refusal = judge(
        10, rate_limited=True, in_flight_at_send=2, proven=2, max_pause_s=300
    )
    learner.on_refusal(refusal, 2, limiter.epoch, clock.now)

    def requests() -> int:
        assert learner.window is not None
        return learner.window.requests

    assert board.mine is not None
    assert board.mine[0] == 28
    assert board.mine[1] == 10
    assert requests() == 21  # 28 of an estimated 42, split in two
    board.theirs = [12]
    learner.on_success(LLM_S, 2, clock.now)
    assert requests() == 20  # 40 between them, split in two
    alone[0] = True
    learner.on_success(LLM_S, 2, clock.now)
    assert requests() == 20  # the other's requests are in the window yet
    clock.now += 11
    learner.on_success(LLM_S, 2, clock.now)
    assert requests() == 40
