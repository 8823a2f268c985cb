"""--dedupe: one request per distinct request in a run, an outcome for every job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.batch import Batch
from tests.helpers import write_jobs
from worker.sim.faults import Faults
from worker.sim.server import Simulator


def jobs(n: int, distinct: int) -> list[dict[str, Any]]:
    return [
        {"id": f"job-{i}", "prompt": f"question {i % distinct}", "metadata": {"n": i}}
        for i in range(n)
    ]


async def test_100_jobs_of_40_requests_send_40_and_write_100(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=5)
    write_jobs(tmp_path / "jobs.jsonl", jobs(100, 40))
    batch = Batch(sim, tmp_path)
    assert await batch.run(dedupe=True) == 0
    assert sim.stats.requests == 40
    results = batch.results
    assert sorted(r["custom_id"] for r in results) == sorted(
        f"job-{i}" for i in range(100)
    )
    by_id = {r["custom_id"]: r for r in results}
    followers = [r for r in results if "deduplicated_from" in r]
    assert len(followers) == 60
    for record in followers:
        leader = by_id[record["deduplicated_from"]]
        assert record["response"] == leader["response"]
        assert record["request_fingerprint"] == leader["request_fingerprint"]
        assert record["metadata"] == {"n": int(record["custom_id"].split("-")[1])}
    summary = batch.summary
    assert summary["deduplicated"] == 60
    assert summary["succeeded"] == 100

    # The cost is that of 40 requests: the same 40 jobs alone cost the same.
    alone = tmp_path / "alone"
    write_jobs(alone / "jobs.jsonl", jobs(40, 40))
    sim.reset()
    single = Batch(sim, alone)
    assert await single.run() == 0
    assert summary["cost"]["total"] == single.summary["cost"]["total"]
    assert summary["tokens"] == single.summary["tokens"]


async def test_followers_share_their_leader_s_failure(
    sim: Simulator, tmp_path: Path
) -> None:
    lines = [{"id": f"j{i}", "prompt": "same", "x_sim_status": 400} for i in range(3)]
    write_jobs(tmp_path / "jobs.jsonl", lines)
    batch = Batch(sim, tmp_path)
    assert await batch.run(dedupe=True) == 1
    assert sim.stats.requests == 1
    errors = batch.errors
    assert len(errors) == 3
    assert {e["error"]["code"] for e in errors} == {"http_400"}
    assert sum("deduplicated_from" in e for e in errors) == 2


async def test_without_dedupe_every_job_is_sent(sim: Simulator, tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", jobs(10, 2))
    batch = Batch(sim, tmp_path)
    assert await batch.run() == 0
    assert sim.stats.requests == 10
    assert batch.summary["deduplicated"] == 0
