"""Mira's day, decided as values (domain/day.py) and kept by the run
(flow/day.py): the wake after the reset, the reserve left to people, the waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from worker.domain.day import (
    SKEW_PAUSE_S,
    WAKE_JITTER_S,
    DayCount,
    DayWait,
    next_reset,
    wake_at,
    wake_jitter_s,
)
from worker.errors import QuotaError
from worker.exits import StopReason
from worker.flow.day import DayBudget, DayReader, DayRules

EVENING = datetime(2026, 12, 7, 23, 59, 30, tzinfo=UTC)
MIDNIGHT = datetime(2026, 12, 8, tzinfo=UTC)


class FakeWall:
    """A wall clock whose sleep moves it."""

    def __init__(self, start: datetime = EVENING) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def reader(*counts: DayCount) -> tuple[list[int], DayReader]:
    calls: list[int] = []

    async def read() -> DayCount:
        calls.append(1)
        return counts[min(len(calls), len(counts)) - 1]

    return calls, read


def test_the_wake_is_the_next_reset_plus_the_jitter() -> None:
    assert next_reset(EVENING) == MIDNIGHT
    assert next_reset(MIDNIGHT) == MIDNIGHT + timedelta(days=1)
    assert wake_at(EVENING, jitter_s=7.0) == MIDNIGHT + timedelta(seconds=7)


def test_a_cap_just_after_a_wake_with_no_answer_is_the_servers_clock() -> None:
    woke = MIDNIGHT + timedelta(seconds=5)
    soon = woke + timedelta(minutes=2)
    # No answer since the wake: the server's day has not turned; ask in 60 s.
    assert wake_at(
        soon, jitter_s=7.0, woke_at=woke, answered_since_wake=False
    ) == soon + timedelta(seconds=SKEW_PAUSE_S)
    # Answers came: the cap of the new day is real; the next reset.
    assert wake_at(
        soon, jitter_s=7.0, woke_at=woke, answered_since_wake=True
    ) == MIDNIGHT + timedelta(days=1, seconds=7)
    late = woke + timedelta(minutes=20)
    assert wake_at(
        late, jitter_s=7.0, woke_at=woke, answered_since_wake=False
    ) == MIDNIGHT + timedelta(days=1, seconds=7)


def test_the_jitter_is_seeded_by_input_and_shard() -> None:
    low, high = WAKE_JITTER_S
    shards = [wake_jitter_s("jobs", (k, 4)) for k in range(4)]
    assert all(low <= j <= high for j in shards)
    assert len(set(shards)) == 4  # shards on one account wake apart
    assert wake_jitter_s("jobs", (1, 4)) == shards[1]  # the same on a rerun


def test_a_wait_says_until_when() -> None:
    wait = DayWait("daily_cap", EVENING, MIDNIGHT + timedelta(seconds=7))
    assert wait.describe() == "until 2026-12-08 00:00:07 UTC (in 37 s)"
    long = DayWait("daily_cap", EVENING - timedelta(hours=3), MIDNIGHT)
    assert long.describe().endswith("(in 3 h 0 min)")


async def test_the_reserve_stops_the_run_with_its_own_reason() -> None:
    wall = FakeWall()
    calls, read = reader(DayCount(left=13, limit=50))
    day = DayBudget(DayRules(reserve=10), wall=wall, sleep=wall.sleep, read=read)
    await day.ready()
    assert day.left == 13
    assert [day.take() for _ in range(3)] == [True, True, True]
    with pytest.raises(QuotaError) as caught:
        day.take()
    assert caught.value.stop_reason is StopReason.DAILY_RESERVE
    assert "10 of the day's messages are left" in str(caught.value)
    assert len(calls) == 1
    day.give_back()  # a request Mira refused before counting it
    assert day.take()


async def test_until_done_waits_for_the_reset_and_counts_the_new_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wall = FakeWall()
    calls, read = reader(DayCount(left=11, limit=50), DayCount(left=50, limit=50))
    rules = DayRules(reserve=10, until_done=True, jitter_s=4.0)
    day = DayBudget(rules, wall=wall, sleep=wall.sleep, read=read)
    await day.ready()
    assert day.take()
    assert not day.take()  # the reserve: a wait begins instead
    wait = day.waiting()
    assert wait is not None
    assert wait.reason == "daily_reserve"
    assert wait.until == MIDNIGHT + timedelta(seconds=4)
    assert "waiting for Mira's daily reset" in caplog.text
    assert "until 2026-12-08 00:00:04 UTC" in caplog.text
    await day.ready()  # sleeps on the wall clock, in steps
    assert wall.now >= wait.until
    assert max(wall.slept) <= 60.0
    assert day.waiting() is None
    assert day.left == 50
    assert len(calls) == 2
    assert day.waits == [wait]


async def test_the_daily_cap_waits_only_when_the_deadline_allows() -> None:
    wall = FakeWall()
    soon = DayRules(
        until_done=True, jitter_s=4.0, deadline=EVENING + timedelta(seconds=10)
    )
    day = DayBudget(soon, wall=wall, sleep=wall.sleep, read=None)
    assert not day.can_wait()  # the reset comes after the deadline
    later = DayRules(
        until_done=True, jitter_s=4.0, deadline=EVENING + timedelta(hours=1)
    )
    day = DayBudget(later, wall=wall, sleep=wall.sleep, read=None)
    assert day.can_wait()
    day.cap_reached()
    day.cap_reached()  # more refusals of the same moment: one wait
    assert len(day.waits) == 1
    assert not day.take()
    await day.ready()
    assert day.take()
    assert not DayBudget(DayRules(), wall=wall, sleep=wall.sleep, read=None).can_wait()


async def test_the_reserve_with_a_deadline_before_the_reset_stops() -> None:
    wall = FakeWall()
    _calls, read = reader(DayCount(left=10, limit=50))
    rules = DayRules(
        reserve=10, until_done=True, deadline=EVENING + timedelta(seconds=5)
    )
    day = DayBudget(rules, wall=wall, sleep=wall.sleep, read=read)
    await day.ready()
    with pytest.raises(QuotaError, match="after the --deadline"):
        day.take()


async def test_without_the_usage_route_the_reserve_counts_from_the_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wall = FakeWall()
    _calls, read = reader(
        DayCount(limit=20, note="/api/v1/auth/me/usage is not served")
    )
    day = DayBudget(DayRules(reserve=5), wall=wall, sleep=wall.sleep, read=read)
    await day.ready()
    assert day.left == 20
    assert "is not served" in caplog.text
    assert "counts this run's own requests" in caplog.text
    caplog.clear()
    _calls, read = reader(DayCount(note="/api/v1/auth/me/usage did not answer in time"))
    day = DayBudget(DayRules(reserve=5), wall=wall, sleep=wall.sleep, read=read)
    await day.ready()
    assert day.left is None
    assert day.take()
    assert "cannot keep --daily-reserve" in caplog.text


async def test_a_plan_without_a_cap_has_no_day_to_share() -> None:
    wall = FakeWall()
    _calls, read = reader(DayCount(left=-1, limit=-1))
    day = DayBudget(DayRules(reserve=5), wall=wall, sleep=wall.sleep, read=read)
    await day.ready()
    assert day.left is None
    assert all(day.take() for _ in range(100))
