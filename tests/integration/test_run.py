"""`run` in-process against the simulator, on the injected clock.

Backoffs and Retry-After pauses pass on the fake clock, so faults that would cost
seconds of real waiting cost none; the process-level promises (exit codes of the
real command, signals, kills) are in tests/e2e.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.batch import Batch
from tests.helpers import (
    OTHER_KEY,
    assert_outputs_clean,
    simple_jobs,
    write_jobs,
)
from worker.errors import ConfigError
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


def mixed_jobs(n: int) -> list[dict[str, Any]]:
    """Both line shapes, with and without system prompts, all with metadata."""
    jobs: list[dict[str, Any]] = []
    for i in range(n):
        meta = {"row": i, "tag": f"t{i % 7}"}
        if i % 3 == 0:
            body = {
                "model": "mira",
                "messages": [{"role": "user", "content": f"batch question {i}"}],
            }
            jobs.append(
                {
                    "custom_id": f"b-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                    "metadata": meta,
                }
            )
        elif i % 3 == 1:
            jobs.append(
                {
                    "id": f"p-{i}",
                    "prompt": f"prompt question {i}",
                    "system": "brief",
                    "temperature": 0.5,
                    "metadata": meta,
                }
            )
        else:
            jobs.append(
                {
                    "id": f"m-{i}",
                    "messages": [{"role": "user", "content": f"messages {i}"}],
                    "model": "mira-pro",
                    "metadata": meta,
                }
            )
    return jobs


@pytest.fixture
def batch(sim: Simulator, tmp_path: Path) -> Batch:
    return Batch(sim, tmp_path)


async def test_faulty_server_still_yields_every_result_exactly_once(
    batch: Batch, sim: Simulator
) -> None:
    sim.faults = Faults(
        seed=11,
        latency_ms=2,
        latency_jitter_ms=5,
        p500=0.02,
        p503=0.02,
        p502=0.02,
        p429=0.02,
        retry_after=0.2,
        p_drop=0.02,
        p_truncate=0.02,
        p_malformed=0.02,
    )
    jobs = mixed_jobs(300)
    write_jobs(batch.dir / "jobs.jsonl", jobs)
    assert await batch.run(concurrency=16, max_attempts=10) == 0
    assert batch.errors == []
    by_id = {r["custom_id"]: r for r in batch.results}
    assert len(batch.results) == len(by_id) == 300
    for i, job in enumerate(jobs):
        record = by_id[job.get("custom_id", job.get("id"))]
        assert record["metadata"] == {"row": i, "tag": f"t{i % 7}"}
        assert record["response"]["status_code"] == 200
        assert record["response"]["request_id"]
        assert record["error"] is None
        content = record["response"]["body"]["choices"][0]["message"]["content"]
        assert content.startswith("Echo: ")
        assert str(i) in content
    stats = sim.stats
    assert stats.by_status[500] + stats.by_status[503] + stats.by_status[502] > 0
    assert stats.by_status[429] > 0
    assert stats.dropped > 0
    assert stats.truncated > 0
    assert stats.malformed > 0
    assert stats.duplicate_successes == 0
    summary = batch.summary
    assert summary["stop_reason"] == "completed"
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (300, 300, 0)
    assert summary["not_attempted"] == 0
    assert summary["retries"]["total"] > 0
    assert summary["tokens"]["total"] > 0
    assert summary["requests"]["sent"] == stats.requests
    assert_outputs_clean(batch.dir)


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [("revoke_after", 3, "auth_failed"), ("payment_after", 4, "payment_required")],
)
async def test_fatal_status_stops_keeps_successes_and_resume_finishes(
    batch: Batch, sim: Simulator, fault: str, code: int, reason: str
) -> None:
    sim.faults = Faults(seed=3, latency_ms=20, latency_jitter_ms=20).updated(
        {fault: 60}
    )
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(400))
    assert await batch.run(concurrency=8) == code
    assert sim.stats.after_revocation + sim.stats.after_payment_stop <= 8
    results = batch.results
    assert 0 < len(results) <= 60
    assert all(r["response"]["status_code"] == 200 for r in results)
    assert batch.errors == []
    assert batch.summary["stop_reason"] == reason
    assert batch.summary["exit_code"] == code
    assert batch.summary["succeeded"] == len(results)
    # Requests already at the server when the stop came were let land: every
    # answer the server gave was written, so none is paid for again below.
    assert sim.stats.undelivered == 0
    assert batch.summary["slots_left_held"] == 0

    # The operator fixes the key or the balance and runs the same command again.
    sim.keys.add(OTHER_KEY)
    sim.faults = Faults(seed=3)
    assert await batch.run(concurrency=8, key=OTHER_KEY) == 0
    assert sorted(batch.done_ids()) == sorted(f"job-{i}" for i in range(400))
    assert sim.stats.duplicate_successes == 0
    assert batch.summary["skipped"] == len(results)
    assert_outputs_clean(batch.dir)


async def test_refused_jobs_are_sent_once_and_land_in_errors(
    batch: Batch, sim: Simulator
) -> None:
    sim.faults = Faults(plan="pro")
    refused: list[dict[str, Any]] = [
        {"id": "r400", "prompt": "x", "model": "no-such-model"},
        {"id": "r403", "prompt": "x", "model": "mira-max"},
        {"id": "r404", "prompt": "x", "x_sim_status": 404},
        {"id": "r413", "prompt": "x", "x_sim_status": 413},
    ]
    write_jobs(batch.dir / "jobs.jsonl", [*simple_jobs(20), *refused])
    assert await batch.run() == 1
    errors = {e["custom_id"]: e for e in batch.errors}
    assert set(errors) == {"r400", "r403", "r404", "r413"}
    for job_id, record in errors.items():
        status = int(job_id[1:])
        assert record["response"]["status_code"] == status
        assert record["error"]["code"] == f"http_{status}"
        assert record["error"]["message"]
        assert record["attempts"] == 1
        assert record["line"] > 20  # a refused job names its input line
    assert sim.stats.requests == 24
    assert len(batch.results) == 20
    assert batch.summary["failed"] == 4


async def test_broken_lines_are_recorded_and_the_rest_runs(
    batch: Batch, sim: Simulator
) -> None:
    lines: list[Any] = [
        {"id": "ok-1", "prompt": "fine"},
        b"{not json",  # 2
        b"[1, 2, 3]",  # 3
        {"id": "no-content"},  # 4
        {"id": "bad-messages", "messages": [{"role": "user"}]},  # 5
        {"id": "ok-1", "prompt": "the same id again"},  # 6
        b'{"id": "latin1", "prompt": "caf\xe9"}',  # 7
        "",  # 8, blank: skipped
        {"prompt": "no id at all"},  # 9 -> line-9
        {"id": "ok-2", "messages": [{"role": "user", "content": "fine too"}]},  # 10
    ]
    write_jobs(batch.dir / "jobs.jsonl", lines)
    assert await batch.run() == 1
    assert {r["custom_id"] for r in batch.results} == {"ok-1", "line-9", "ok-2"}
    errors = batch.errors
    assert sorted(e["line"] for e in errors) == [2, 3, 4, 5, 6, 7]
    assert all(e["error"]["code"] == "invalid_input" for e in errors)
    assert all(e["response"] is None for e in errors)
    by_line = {e["line"]: e for e in errors}
    assert by_line[4]["custom_id"] == "no-content"
    assert by_line[6]["custom_id"] is None  # the id belongs to line 1
    assert by_line[7]["custom_id"] is None
    assert "UTF-8" in by_line[7]["error"]["message"]
    assert sim.stats.requests == 3

    # A resume writes no second record for lines that already have one.
    assert await batch.run() == 1
    assert len(batch.errors) == 6
    assert len(batch.results) == 3
    assert sim.stats.requests == 3


async def test_quota_spent_429_is_treated_as_payment_required(
    batch: Batch, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults = Faults(seed=6, p_quota=0.05)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(200))
    assert await batch.run() == 4
    assert batch.summary["stop_reason"] == "payment_required"
    assert "quota" in caplog.text
    assert batch.errors == []
    assert sim.stats.by_status[429] == 1  # never retried


async def test_the_daily_cap_stops_with_exit_5_naming_it_and_resume_completes(
    batch: Batch, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.faults = Faults(daily_cap=25, latency_ms=5)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(80))
    assert await batch.run() == 5
    summary = batch.summary
    assert summary["stop_reason"] == "daily_cap"
    assert "daily message cap" in summary["message"]
    assert "00:00 UTC" in summary["message"]
    assert "00:00 UTC" in summary["next_step"]
    assert summary["daily_cap"]["resets_at"].endswith("T00:00:00+00:00")
    assert summary["daily_cap"]["hit_at"] < summary["daily_cap"]["resets_at"]
    assert summary["refusals"]["daily"] >= 1
    assert "3600" in caplog.text
    assert "00:00 UTC" in caplog.text
    assert 3600 not in batch.clock.sleeps  # stopped, never waited it out
    assert batch.errors == []
    assert len(batch.results) >= 25 - 3  # every answer the cap allowed, but few
    # A rerun the same day stops at once: at most its first requests are sent.
    before = sim.stats.requests
    assert await batch.run() == 5
    assert sim.stats.requests - before <= 3
    sim.faults = Faults()
    sim.reset()  # 00:00 UTC
    assert await batch.run() == 0
    assert sorted(batch.done_ids()) == sorted(f"job-{i}" for i in range(80))


async def test_deadline_stops_with_exit_5_and_in_flight_work_is_kept(
    batch: Batch, sim: Simulator
) -> None:
    sim.faults = Faults(latency_ms=50)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(400))
    assert await batch.run(deadline_s=0.3) == 5
    assert batch.summary["stop_reason"] == "deadline"
    assert len(batch.done_ids()) == sim.stats.requests  # in flight finished
    assert batch.summary["not_attempted"] > 0
    sim.faults = Faults()
    assert await batch.run() == 0
    assert len(batch.done_ids()) == 400


async def test_token_budget_stops_with_exit_5_once_spent(
    batch: Batch, sim: Simulator
) -> None:
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(100))
    assert await batch.run(concurrency=2, token_budget=300) == 5
    spent = batch.summary
    assert spent["stop_reason"] == "token_budget"
    per_job = spent["tokens"]["total"] / spent["succeeded"]
    # Requests stop as soon as the budget is reached; at most those in flight finish.
    assert 300 <= spent["tokens"]["total"] <= 300 + 3 * per_job
    assert await batch.run() == 0
    assert len(batch.done_ids()) == 100


async def test_systematic_failure_stops_after_the_limit_not_the_whole_file(
    batch: Batch, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(1000))
    code = await batch.run(
        base_url=sim.base_url + "/wrong", max_consecutive_failures=20
    )
    assert code == 6
    assert 20 <= sim.stats.by_status[404] <= 24
    assert "404" in caplog.text
    assert "--retry-failed" in caplog.text
    assert batch.summary["stop_reason"] == "systematic_failure"
    assert 20 <= len(batch.errors) <= 24
    assert {e["error"]["code"] for e in batch.errors} == {"http_404"}


async def test_retry_failed_turns_failures_into_results_once_the_server_recovers(
    batch: Batch, sim: Simulator
) -> None:
    sim.faults = Faults(p503=1)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(30))
    assert await batch.run(max_attempts=2) == 1
    assert len(batch.errors) == 30
    assert {e["error"]["code"] for e in batch.errors} == {"retries_exhausted"}
    assert {e["response"]["status_code"] for e in batch.errors} == {503}
    sim.faults = Faults()
    assert await batch.run() == 1  # a plain resume does not retry failed jobs
    assert sim.stats.by_status[200] == 0
    assert await batch.run(mode="retry_failed") == 0
    assert batch.errors == []
    assert sorted(batch.done_ids()) == sorted(f"job-{i}" for i in range(30))


async def test_fresh_needs_force_to_discard_results(
    batch: Batch, sim: Simulator
) -> None:
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(5))
    assert await batch.run() == 0
    with pytest.raises(ConfigError, match="--force"):
        await batch.run(mode="fresh")
    assert sim.stats.requests == 5
    assert await batch.run(mode="fresh", force=True) == 0
    assert len(batch.results) == 5
    assert sim.stats.requests == 10


async def test_adaptive_concurrency_settles_below_the_servers_limit(
    batch: Batch, sim: Simulator
) -> None:
    # Real time: the server's requests in flight end in real time, so a pause
    # on the fake clock would not let them. Mira's Retry-After is 5 s.
    sim.faults = Faults(max_in_flight=3, in_flight_retry_after=0.2, latency_ms=10)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(120))
    assert await batch.run(concurrency=32, real_time=True) == 0
    assert sim.stats.during_retry_after == 0
    assert len(batch.results) == 120
    assert sim.stats.by_status[429] < 0.10 * sim.stats.requests
    assert batch.summary["concurrency"]["final"] <= 4
    assert batch.summary["concurrency"]["decreases"] >= 1
