"""Adaptive concurrency, even pacing and the shared Retry-After gate, on fake time."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.fakes import FakeClock
from worker.flow import PROBE_PATIENCE, AdaptiveLimiter, Pacer, RetryAfterGate


class TestAdaptiveLimiter:
    async def test_starts_at_three_and_never_above_the_ceiling(self) -> None:
        assert AdaptiveLimiter(16).limit == 3
        assert AdaptiveLimiter(2).limit == 2
        limiter = AdaptiveLimiter(5)
        for _ in range(20):
            limiter.on_success()
        assert limiter.limit == 5

    async def test_slow_start_grows_one_per_success(self) -> None:
        limiter = AdaptiveLimiter(64)
        for _ in range(10):
            limiter.on_success()
        assert limiter.limit == 13

    async def test_429_halves_once_per_congestion_event(self) -> None:
        limiter = AdaptiveLimiter(64, initial=16)
        epoch = await limiter.acquire()
        assert limiter.on_congestion(epoch)
        assert limiter.limit == 8
        # Another 429 from a request sent before the cut is the same event.
        assert not limiter.on_congestion(epoch)
        assert limiter.limit == 8
        assert limiter.decreases == 1

    async def test_never_below_one(self) -> None:
        limiter = AdaptiveLimiter(8, initial=1)
        for _ in range(5):
            assert limiter.on_congestion(await limiter.acquire())
            limiter.release()
        assert limiter.limit == 1

    async def test_after_a_429_grows_by_one_per_window_and_probes_slowly(self) -> None:
        limiter = AdaptiveLimiter(32, initial=4)
        limiter.on_congestion(await limiter.acquire())
        limiter.release()
        assert limiter.limit == 2
        for _ in range(2):
            limiter.on_success()
        assert limiter.limit == 3  # one window of 2 successes
        for _ in range(3 * PROBE_PATIENCE - 1):
            limiter.on_success()
        assert limiter.limit == 3  # probing the level that drew the 429 waits longer
        limiter.on_success()
        assert limiter.limit == 4

    async def test_acquire_waits_for_a_slot_and_wakes_in_order(self) -> None:
        limiter = AdaptiveLimiter(4, initial=1)
        await limiter.acquire()
        order: list[int] = []

        async def take(n: int) -> None:
            await limiter.acquire()
            order.append(n)

        tasks = [asyncio.create_task(take(n)) for n in range(3)]
        await asyncio.sleep(0)
        assert order == []
        assert limiter.in_flight == 1
        limiter.release()
        await asyncio.sleep(0)
        assert order == [0]
        limiter.on_success()  # limit 2: one more may go
        await asyncio.sleep(0)
        assert order == [0, 1]
        for task in tasks[2:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limiter.in_flight == 2

    async def test_cancelled_waiter_leaks_no_slot(self) -> None:
        limiter = AdaptiveLimiter(1, initial=1)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release()  # grants the slot to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.in_flight == 0
        await asyncio.wait_for(limiter.acquire(), 1)


class TestPacer:
    async def test_starts_are_evenly_spaced(self) -> None:
        clock = FakeClock()
        pacer = Pacer(5.0, clock=clock, sleep=clock.sleep)  # 300 rpm
        starts = []
        for _ in range(40):
            await pacer.acquire()
            starts.append(clock())
        assert starts[-1] - starts[0] == pytest.approx(39 * 0.2)
        for i, t in enumerate(starts):
            in_window = [s for s in starts if t <= s < t + 2.0]
            assert len(in_window) <= 11, i

    async def test_concurrent_callers_start_one_interval_apart(self) -> None:
        clock = FakeClock()
        pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
        starts: list[float] = []

        async def start() -> None:
            await pacer.acquire()
            starts.append(clock())

        await asyncio.gather(*(start() for _ in range(5)))
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(gap >= 0.1 - 1e-9 for gap in gaps)

    async def test_a_correction_delays_requests_already_waiting(self) -> None:
        clock = FakeClock()
        waits: list[float] = []

        async def record(seconds: float) -> None:
            if not waits:
                pacer.adjust(9)  # a response reports 9 more units meanwhile
            waits.append(seconds)
            clock.now += seconds

        pacer = Pacer(10.0, clock=clock, sleep=record)
        await pacer.acquire()
        await pacer.acquire()
        assert waits == [pytest.approx(0.1), pytest.approx(0.9)]

    async def test_cost_and_adjustment_move_the_schedule(self) -> None:
        clock = FakeClock()
        pacer = Pacer(100.0, clock=clock, sleep=clock.sleep)  # 6000 tokens/min
        await pacer.acquire(50)  # estimated
        pacer.adjust(150)  # the usage said 200
        await pacer.acquire(10)
        assert clock.sleeps == [pytest.approx(2.0)]

    async def test_idle_time_is_not_banked_as_a_burst(self) -> None:
        clock = FakeClock()
        pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
        await pacer.acquire()
        clock.now += 100
        await pacer.acquire()
        await pacer.acquire()
        assert clock.sleeps == [pytest.approx(1.0)]

    def test_rate_must_be_positive(self) -> None:
        clock = FakeClock()
        with pytest.raises(ValueError, match="positive"):
            Pacer(0, clock=clock, sleep=clock.sleep)


class TestRetryAfterGate:
    async def test_open_gate_does_not_wait(self) -> None:
        clock = FakeClock()
        gate = RetryAfterGate(clock=clock, sleep=clock.sleep)
        await gate.wait()
        assert clock.sleeps == []

    async def test_every_waiter_holds_until_the_longest_retry_after(self) -> None:
        clock = FakeClock()
        gate = RetryAfterGate(clock=clock, sleep=clock.sleep)
        gate.defer(5)
        gate.defer(2)  # a shorter one does not shorten the pause
        assert gate.remaining_s() == 5
        await gate.wait()
        assert clock.sleeps == [5]
        assert clock.now == 1005
        assert gate.remaining_s() == 0


async def test_cancelled_waiter_dropped_by_wake_is_not_removed_twice() -> None:
    limiter = AdaptiveLimiter(1, initial=1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()  # its future is cancelled now; the task only runs later...
    limiter.release()  # ...so _wake pops and skips the cancelled future first
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight == 0
