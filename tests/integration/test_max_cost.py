"""--max-cost: no request starts that could take the cost past the cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.batch import Batch
from tests.helpers import simple_jobs, write_jobs
from worker.domain.prices import PriceBook
from worker.sim.faults import Faults
from worker.sim.server import Simulator

# 1,000 RUB per million tokens each way: a job estimated at its prompt's words
# plus 256 output tokens may cost about 0.26 RUB; an answer costs far less.
PRICES = PriceBook("override", {"mira": (1000.0, 1000.0)})


async def test_the_run_stops_before_the_cap_and_a_higher_cap_continues(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults = Faults(latency_ms=5)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(200))
    batch = Batch(sim, tmp_path)
    assert await batch.run(max_cost_rub=1.0, prices=PRICES) == 5
    summary = batch.summary
    assert summary["stop_reason"] == "cost_budget"
    assert summary["cost"]["total"] <= 1.0
    assert "--max-cost 1.00 RUB" in summary["message"]
    assert 0 < summary["succeeded"] < 200
    assert summary["not_attempted"] > 0  # left for a resume
    assert summary["total"] == 200  # the whole input, read or not
    assert caplog.text.count("80% of --max-cost") == 1

    assert await batch.run(max_cost_rub=100.0, prices=PRICES) == 0
    assert len(batch.results) == 200


async def test_no_cap_without_the_flag(sim: Simulator, tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(20))
    batch = Batch(sim, tmp_path)
    assert await batch.run(prices=PRICES) == 0
    assert batch.summary["cost"]["total"] > 0
