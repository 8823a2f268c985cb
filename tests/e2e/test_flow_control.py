"""Flow control against a server that, like Mira, allows 3 requests in flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, run_batch, simple_jobs, write_jobs
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.e2e


async def test_adaptive_concurrency_settles_below_the_servers_limit(
    sim: Simulator, tmp_path: Path
) -> None:
    # Mira's Retry-After for this is 5 s; a shorter one keeps the test quick.
    sim.faults = Faults(max_in_flight=3, in_flight_retry_after=0.2, latency_ms=10)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(200))
    result = await run_batch(tmp_path, sim.base_url, "--concurrency", "32")
    assert result.code == 0, result.stderr
    assert len(read_jsonl(tmp_path / "jobs.results.jsonl")) == 200
    answered_429 = sim.stats.by_status[429]
    assert answered_429 < 0.10 * sim.stats.requests
    assert sim.stats.during_retry_after == 0
    summary = json.loads((tmp_path / "jobs.summary.json").read_text())
    assert summary["concurrency"]["final"] <= 4
    assert summary["concurrency"]["decreases"] >= 1
