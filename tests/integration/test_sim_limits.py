"""The simulator's limit stack against MIRA_API.md: each 429 kind, its Retry-After.

MIRA_API.md: 429 with Retry-After 5 above 3 requests in flight per user, 10 when
the GPU queue is full, the remaining seconds of the per-user sliding window
(60 requests / 60 s), 3600 at the daily cap, 86400 once the monthly token
budget is spent; every error body is {"detail": "..."}; the server's 30 s
timeout is a 408; all of a user's keys are one user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeClock
from tests.helpers import OTHER_KEY, SENTINEL_KEY
from worker.sim.faults import MIRA_PROFILE, Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


async def post(
    sim: Simulator, key: str = SENTINEL_KEY, prompt: str = "hi"
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.base_url}/chat/completions",
            json={"messages": [{"role": "user", "content": prompt}]},
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        return response.status, dict(response.headers), await response.json()


def assert_mira_429(answer: tuple[int, dict[str, str], Any], retry_after: int) -> None:
    status, headers, body = answer
    assert status == 429
    assert headers["Retry-After"] == str(retry_after)  # whole seconds, as Mira
    assert body == {"detail": f"Rate limit exceeded, retry after {retry_after} seconds"}


async def test_monthly_token_budget_is_86400(sim: Simulator) -> None:
    sim.faults = Faults(monthly_tokens=1)
    assert (await post(sim))[0] == 200
    assert_mira_429(await post(sim), 86400)
    assert sim.stats.limited["monthly_tokens"] == 1


@pytest.fixture
async def timed() -> AsyncIterator[tuple[Simulator, FakeClock]]:
    """A simulator whose time is a fake clock the test moves."""
    clock = FakeClock()
    async with Simulator(keys=[SENTINEL_KEY], clock=clock, sleep=clock.sleep) as sim:
        yield sim, clock


async def test_sliding_window_says_the_whole_seconds_until_the_oldest_leaves(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, clock = timed
    sim.faults = Faults(window_requests=2, window_s=4)
    assert [(await post(sim))[0] for _ in range(2)] == [200, 200]
    clock.now += 0.5
    status, headers, _ = await post(sim)
    assert status == 429
    assert headers["Retry-After"] == "4"  # 3.5 s, in whole seconds up
    clock.now += 3.5
    assert (await post(sim))[0] == 200  # the oldest two left the window
    assert sim.stats.limited["window"] == 1


async def test_daily_cap_is_3600(sim: Simulator) -> None:
    sim.faults = Faults(daily_cap=2)
    assert [(await post(sim))[0] for _ in range(2)] == [200, 200]
    assert_mira_429(await post(sim), 3600)
    assert sim.stats.limited["daily_cap"] == 1


async def test_in_flight_above_the_limit_is_5_across_all_of_a_users_keys(
    sim: Simulator,
) -> None:
    sim.keys.add(OTHER_KEY)
    sim.faults = Faults(max_in_flight=1, in_flight_retry_after=5, latency_ms=200)
    answers = await asyncio.gather(post(sim), post(sim, OTHER_KEY, "other"))
    assert sorted(a[0] for a in answers) == [200, 429]
    assert_mira_429(next(a for a in answers if a[0] == 429), 5)
    assert sim.stats.limited["in_flight"] == 1


async def test_full_gpu_queue_is_10(sim: Simulator) -> None:
    sim.faults = Faults(gpu_slots=1, gpu_queue=0, latency_ms=200)
    answers = await asyncio.gather(post(sim, prompt="a"), post(sim, prompt="b"))
    assert sorted(a[0] for a in answers) == [200, 429]
    assert_mira_429(next(a for a in answers if a[0] == 429), 10)
    assert sim.stats.limited["gpu_queue"] == 1


async def test_a_queued_request_waits_for_a_gpu_slot(sim: Simulator) -> None:
    sim.faults = Faults(gpu_slots=1, gpu_queue=1, latency_ms=50)
    answers = await asyncio.gather(post(sim, prompt="a"), post(sim, prompt="b"))
    assert [a[0] for a in answers] == [200, 200]


async def test_a_request_over_the_server_timeout_is_408(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, clock = timed
    sim.faults = Faults(latency_ms=200, server_timeout_s=0.05)
    status, _, body = await post(sim)
    assert status == 408
    assert "detail" in body
    assert clock.sleeps == [0.05]  # cut at the timeout, not at the latency


async def test_limits_are_checked_in_the_backends_order(sim: Simulator) -> None:
    # Monthly budget before the window before the daily cap.
    sim.faults = Faults(monthly_tokens=1, window_requests=1, daily_cap=1)
    assert (await post(sim))[0] == 200
    assert_mira_429(await post(sim), 86400)
    assert dict(sim.stats.limited) == {"monthly_tokens": 1}


async def test_the_mira_profile_is_miras_limits() -> None:
    faults = Faults().updated(MIRA_PROFILE)
    assert (faults.max_in_flight, faults.in_flight_retry_after) == (3, 5)
    assert (faults.window_requests, faults.window_s) == (60, 60)
    assert faults.server_timeout_s == 30


async def test_latency_is_log_normal_around_its_median(sim: Simulator) -> None:
    from worker.sim.faults import latency_s

    faults = Faults(latency_ms=300, latency_sigma=0.4)
    samples = sorted(latency_s(faults, (n,), 0) for n in range(2000))
    median = samples[1000]
    assert 0.27 < median < 0.33
    assert samples[-20] > 1.8 * median  # a long right tail
    assert min(samples) > 0
