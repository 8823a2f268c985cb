"""Unattended for days, in-process on the fake clock and wall: past the daily
cap with --until-done, a share of the day left with --daily-reserve, a key
rotated in its file, and the pricing route read beside the run."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.batch import Batch
from tests.helpers import OTHER_KEY, SENTINEL_KEY, simple_jobs, write_jobs
from worker.sim.faults import Faults
from worker.sim.limits import AccountLimits, Refusal
from worker.sim.server import Simulator

EVENING = datetime(2026, 12, 7, 23, 59, 30, tzinfo=UTC)


def batch_of(sim: Simulator, directory: Path, jobs: int, *, at: datetime) -> Batch:
    """`jobs` jobs, the run's wall and the simulator's on one fake clock."""
    batch = Batch(sim, directory)
    batch.clock.wall_start = at
    sim.wall = batch.clock.wall
    write_jobs(directory / "jobs.jsonl", simple_jobs(jobs))
    return batch


async def usage(sim: Simulator, key: str = SENTINEL_KEY) -> dict[str, Any]:
    root = sim.base_url.removesuffix("/v1")
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{root}/api/v1/auth/me/usage",
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        data: dict[str, Any] = await response.json()
        return data


def once_each(batch: Batch, jobs: int) -> None:
    ids = Counter(batch.done_ids())
    assert len(ids) == jobs
    assert set(ids.values()) == {1}


async def test_until_done_waits_for_the_reset_and_answers_the_rest(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults = Faults(seed=1, daily_cap=100, daily_used=60)
    batch = batch_of(sim, tmp_path, 100, at=EVENING)
    assert await batch.run(until_done=True) == 0
    once_each(batch, 100)
    summary = batch.summary
    assert summary["succeeded"] == 100
    assert summary["stop_reason"] == "completed"
    (wait,) = summary["waits"]
    assert wait["reason"] == "daily_cap"
    assert wait["until"].startswith("2026-12-08T00:00:")
    # 40 answers on the evening's day, the other 60 on the new one.
    answered_after = sim.limits.daily_used(sim.faults, sim.today())
    assert sim.today().isoformat() == "2026-12-08"
    assert answered_after == 60
    assert summary["refusals"]["daily"] >= 1
    assert "waiting for Mira's daily reset (--until-done), until 2026-12-08 00:00:" in (
        caplog.text
    )
    assert "the wait for the daily reset is over" in caplog.text


async def test_the_daily_reserve_leaves_its_share_and_stops(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(seed=1, daily_cap=50)
    batch = batch_of(sim, tmp_path, 100, at=EVENING - timedelta(hours=6))
    assert await batch.run(daily_reserve=10) == 5
    summary = batch.summary
    assert summary["stop_reason"] == "daily_reserve"
    assert summary["succeeded"] == 40
    assert summary["not_attempted"] == 60
    assert summary["daily_messages_left"] == 10
    assert "--until-done" in summary["next_step"]
    assert (await usage(sim))["quota"]["remaining_today"] == 10
    assert sim.stats.limited["daily_cap"] == 0  # it never met the cap


async def test_the_reserve_with_until_done_takes_a_share_each_day(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(seed=1, daily_cap=50, daily_used=5)
    batch = batch_of(sim, tmp_path, 100, at=EVENING - timedelta(hours=6))
    assert await batch.run(daily_reserve=10, until_done=True) == 0
    once_each(batch, 100)
    summary = batch.summary
    # 35 the first day (people used 5), 40 the second, 25 the third.
    assert [w["reason"] for w in summary["waits"]] == ["daily_reserve"] * 2
    assert [w["until"][:10] for w in summary["waits"]] == ["2026-12-08", "2026-12-09"]
    assert sim.limits.daily_used(sim.faults, sim.today()) == 25
    assert sim.stats.limited["daily_cap"] == 0


async def test_the_deadline_wins_over_the_wait(sim: Simulator, tmp_path: Path) -> None:
    sim.faults = Faults(seed=1, daily_cap=20)
    batch = batch_of(sim, tmp_path, 50, at=EVENING - timedelta(hours=3))
    assert await batch.run(until_done=True, deadline_s=3600) == 5
    summary = batch.summary
    assert summary["stop_reason"] == "daily_cap"
    assert summary["waits"] == []
    assert summary["succeeded"] == 20


async def test_the_monthly_budget_still_stops_the_run(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(seed=1, monthly_tokens=50)
    batch = batch_of(sim, tmp_path, 50, at=EVENING)
    assert await batch.run(until_done=True) == 5
    assert batch.summary["stop_reason"] == "monthly_budget"
    assert batch.summary["waits"] == []


class RotatingAt:
    """The simulator's admission, with the key file rewritten at the Nth
    request: Kubernetes updating a mounted Secret while the run goes on."""

    def __init__(
        self, limits: AccountLimits, key_file: Path, new: str, at: int
    ) -> None:
        self._admit = limits.admit
        self._file, self._new, self._at = key_file, new, at
        self.seen = 0

    def __call__(self, key: str, *args: Any) -> Refusal | None:
        self.seen += 1
        if self.seen == self._at:
            self._file.write_text(self._new + "\n")
        return self._admit(key, *args)


async def test_a_key_rotated_in_its_file_is_taken_and_nothing_is_lost(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.keys = {SENTINEL_KEY, OTHER_KEY}
    sim.faults = Faults(seed=1, revoke_after=29, latency_ms=2)
    key_file = tmp_path / "key"
    key_file.write_text(SENTINEL_KEY + "\n")
    sim.limits.admit = RotatingAt(sim.limits, key_file, OTHER_KEY, at=10)  # type: ignore[method-assign,assignment]
    batch = batch_of(sim, tmp_path, 100, at=EVENING)
    assert await batch.run(key=None, api_key_file=key_file, real_time=True) == 0
    once_each(batch, 100)
    assert batch.summary["succeeded"] == 100
    assert batch.summary["key_rotations"] == 1
    assert sim.stats.duplicate_successes == 0
    assert sim.stats.by_status[401] >= 1  # the refused ones, sent again
    assert "the API key was rotated" in caplog.text


@pytest.mark.parametrize(
    ("new_content", "why"),
    [
        (SENTINEL_KEY, "still holds it"),
        ("sk-mira-not-a-key", "holds no Mira key"),
        (OTHER_KEY, ""),  # a new key Mira refuses too
    ],
    ids=["unchanged", "malformed", "refused-too"],
)
async def test_a_401_with_no_good_new_key_stops_the_run(
    sim: Simulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    new_content: str,
    why: str,
) -> None:
    sim.faults = Faults(seed=1, revoke_after=5)
    key_file = tmp_path / "key"
    key_file.write_text(SENTINEL_KEY)
    sim.limits.admit = RotatingAt(sim.limits, key_file, new_content, at=2)  # type: ignore[method-assign,assignment]
    batch = batch_of(sim, tmp_path, 20, at=EVENING)
    assert await batch.run(key=None, api_key_file=key_file) == 3
    assert batch.summary["stop_reason"] == "auth_failed"
    assert batch.summary["key_rotations"] == (1 if new_content == OTHER_KEY else 0)
    assert why in caplog.text


async def test_a_key_from_the_environment_is_not_rotated(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.keys = {SENTINEL_KEY, OTHER_KEY}
    sim.faults = Faults(seed=1, revoke_after=5)
    batch = batch_of(sim, tmp_path, 20, at=EVENING)
    assert await batch.run() == 3
    assert batch.summary["key_rotations"] == 0
    assert "rotated" not in caplog.text


async def test_a_pricing_route_that_never_answers_delays_nothing(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults = Faults(seed=1, account_delay_s=30)
    batch = batch_of(sim, tmp_path, 30, at=EVENING)
    assert await batch.run(real_time=True, request_timeout_s=20) == 0
    summary = batch.summary
    assert summary["succeeded"] == 30
    assert summary["cost"]["prices"] == "list"
    assert "the pricing route did not answer before the run ended" in caplog.text
    # The cost was not known as charged when the answers came: collect prices
    # such records at the summary's prices.
    assert {r["cost_rub"] for r in batch.results} == {None}
