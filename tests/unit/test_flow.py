"""Adaptive concurrency, even pacing and the shared Retry-After gate, on fake time."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.fakes import FakeClock
from worker.flow.gate import RetryAfterGate
from worker.flow.pacing import Pacer, WindowLimiter
from worker.flow.slots import AdaptiveLimiter


class TestAdaptiveLimiter:
    async def test_starts_where_asked_and_never_above_the_ceiling(self) -> None:
        assert AdaptiveLimiter(16, initial=3).limit == 3
        assert AdaptiveLimiter(2, initial=3).limit == 2
        limiter = AdaptiveLimiter(5, initial=1)
        limiter.raise_to(50)
        assert limiter.limit == 5

    async def test_a_cut_starts_a_new_epoch_and_never_goes_below_one(self) -> None:
        limiter = AdaptiveLimiter(64, initial=16)
        epoch, position = await limiter.acquire()
        assert position == 1
        limiter.cut_to(0)
        assert limiter.limit == 1
        assert limiter.epoch == epoch + 1
        assert limiter.decreases == 1
        limiter.cut_to(8)  # a cut never raises
        assert limiter.limit == 1

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
        limiter.raise_to(2)  # one more may go
        await asyncio.sleep(0)
        assert order == [0, 1]
        for task in tasks[2:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class TestWindowLimiter:
    async def test_at_most_n_starts_in_any_window(self) -> None:
        clock = FakeClock()
        window = WindowLimiter(3, 10, clock=clock, sleep=clock.sleep)
        starts = []
        for _ in range(9):
            await window.wait_ready()
            window.take()
            starts.append(clock.now)
        # Bursts of three, each as soon as the oldest start leaves the window.
        assert starts == [1000] * 3 + [1010] * 3 + [1020] * 3

    async def test_history_taken_at_earlier_times_counts(self) -> None:
        clock = FakeClock()
        window = WindowLimiter(2, 10, clock=clock, sleep=clock.sleep)
        window.take_at(995)
        window.take_at(998)
        assert not window.is_ready()
        await window.wait_ready()
        assert clock.now == 1005


class TestPacer:
    async def test_starts_are_evenly_spaced(self) -> None:
        clock = FakeClock()
        pacer = Pacer(5.0, clock=clock, sleep=clock.sleep)  # 300 rpm
        starts = []
        for _ in range(40):
            await pacer.wait_ready()
            pacer.take()
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
            await pacer.wait_ready()
            pacer.take()
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
        await pacer.wait_ready()
        pacer.take()
        await pacer.wait_ready()
        pacer.take()
        assert waits == [pytest.approx(0.1), pytest.approx(0.9)]

    async def test_cost_and_adjustment_move_the_schedule(self) -> None:
        clock = FakeClock()
        pacer = Pacer(100.0, clock=clock, sleep=clock.sleep)  # 6000 tokens/min
        await pacer.wait_ready()
        pacer.take(50)  # estimated
        pacer.adjust(150)  # the usage said 200
        await pacer.wait_ready()
        pacer.take(10)
        assert clock.sleeps == [pytest.approx(2.0)]

    async def test_idle_time_is_not_banked_as_a_burst(self) -> None:
        clock = FakeClock()
        pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
        await pacer.wait_ready()
        pacer.take()
        clock.now += 100
        await pacer.wait_ready()
        pacer.take()
        await pacer.wait_ready()
        pacer.take()
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
