"""Runs against a simulator that behaves as Mira's backend source does, both on
fake clocks: 200s that are not answers, long answers past the server's cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.batch import Batch
from tests.fakes import FakeClock
from tests.helpers import simple_jobs, write_jobs
from worker.sim.faults import Faults
from worker.sim.server import Simulator

SOURCE = Faults(behaviour="source", seed=7)


@pytest.fixture
def batch(clocked_sim: Simulator, tmp_path: Path, clock: FakeClock) -> Batch:
    batch = Batch(clocked_sim, tmp_path)
    batch.clock = clock
    return batch


def contents(batch: Batch) -> list[str]:
    return [
        r["response"]["body"]["choices"][0]["message"]["content"] for r in batch.results
    ]


async def test_upstream_errors_are_retried_to_real_answers(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE.updated({"p_upstream_error": 0.3})
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(40))
    assert await batch.run(max_attempts=10) == 0
    assert clocked_sim.stats.account["bad_answers"] > 5
    assert len(batch.results) == 40
    assert not any(text.startswith("Ошибка") for text in contents(batch))
    assert batch.summary["retries"]["upstream_error"] > 5


async def test_a_withheld_answer_fails_its_job_at_once_and_is_no_result(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE.updated({"p_moderated": 0.25})
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(40))
    assert await batch.run() == 1
    filtered = [e for e in batch.errors if e["error"]["code"] == "content_filtered"]
    assert len(filtered) == clocked_sim.stats.account["bad_answers"] > 3
    assert all(e["attempts"] == 1 for e in filtered)
    assert "I cannot provide that response." not in contents(batch)
    assert len(batch.results) + len(filtered) == 40


async def test_an_empty_answer_is_retried_then_fails_as_empty_answer(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE.updated({"p_empty": 1.0})
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(2))
    assert await batch.run(max_attempts=3) == 1
    assert [e["error"]["code"] for e in batch.errors] == ["empty_answer"] * 2
    assert [e["attempts"] for e in batch.errors] == [3, 3]
    assert batch.results == []


async def test_answers_longer_than_the_servers_cut_come_as_streams(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE.updated({"server_timeout_s": 30, "max_in_flight": 3})
    jobs = simple_jobs(12)
    for job in jobs[::3]:
        job["x_sim_latency_ms"] = 90_000  # a long answer: 90 s of generation
    write_jobs(batch.dir / "jobs.jsonl", jobs)
    assert await batch.run() == 0
    assert len(batch.results) == 12
    # Each long job is cut once (a 408 that leaks its slot), then streamed.
    assert clocked_sim.stats.by_status[408] == 4
    assert clocked_sim.stats.account["streams"] == 4
    long_ids = {f"job-{i}" for i in range(0, 12, 3)}
    long_answers = [r for r in batch.results if r["custom_id"] in long_ids]
    assert len(long_answers) == 4
    assert all(r.get("streamed") is True for r in long_answers)
    assert not any(r.get("streamed") for r in batch.results if r not in long_answers)
    for record in long_answers:
        body = record["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["finish_reason"] == "stop"
        content = body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] == len(content.split())


async def test_stream_always_streams_every_job(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(5))
    assert await batch.run(stream="always") == 0
    assert clocked_sim.stats.account["streams"] == 5
    assert all(r["attempts"] == 1 for r in batch.results)


async def test_stream_never_keeps_to_plain_calls(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE.updated({"server_timeout_s": 1})
    jobs = simple_jobs(1)
    jobs[0]["x_sim_latency_ms"] = 5000
    write_jobs(batch.dir / "jobs.jsonl", jobs)
    assert await batch.run(stream="never", max_attempts=2) == 1
    assert clocked_sim.stats.account["streams"] == 0
    assert batch.errors[0]["response"]["status_code"] == 408


async def test_jobs_with_system_messages_draw_the_warning_once(
    batch: Batch, clocked_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    clocked_sim.faults = SOURCE
    jobs = simple_jobs(6)
    for job in jobs[:4]:
        job["system"] = "Answer in French."
    write_jobs(batch.dir / "jobs.jsonl", jobs)
    assert await batch.run() == 0
    assert batch.summary["jobs_with_system_messages"] == 4
    # Said when the first such job is read, not after the whole file.
    assert caplog.text.count("carries system messages") == 1
    assert "line 1 carries system messages" in caplog.text
    assert clocked_sim.stats.account["system_messages_dropped"] == 4


async def test_system_as_user_keeps_the_instructions(
    batch: Batch, clocked_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    clocked_sim.faults = SOURCE
    jobs = simple_jobs(3)
    for job in jobs:
        job["system"] = "Answer in French."
    write_jobs(batch.dir / "jobs.jsonl", jobs)
    assert await batch.run(system_as_user=True) == 0
    assert batch.summary["jobs_with_system_messages"] == 0
    assert "system messages" not in caplog.text
    assert clocked_sim.stats.account["system_messages_dropped"] == 0
    assert all("Answer in French." in text for text in contents(batch))


async def test_after_a_hard_stop_the_run_waits_out_the_held_slots_then_runs_at_3(
    batch: Batch, clocked_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    clocked_sim.faults = SOURCE.updated(
        {"max_in_flight": 3, "leaked_slots": 3, "latency_ms": 300}
    )
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(60))
    batch.files.results.touch()  # a run killed before its summary left this
    assert await batch.run(concurrency=8) == 0
    summary = batch.summary
    assert len(batch.results) == 60
    assert 1 <= summary["daily_messages_on_refusals"] <= 8
    assert summary["refusals"]["in_flight"] == summary["daily_messages_on_refusals"]
    assert caplog.text.count("held by requests that are not this run's") == 1
    assert summary["learned_limits"]["in_flight"] is None  # no cap learned
    assert summary["concurrency"]["final"] >= 3  # the full cap again


async def test_one_leaked_slot_is_learned_as_a_cap_of_2_with_few_refusals(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE.updated(
        {"max_in_flight": 3, "leaked_slots": 1, "latency_ms": 300}
    )
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(200))
    assert await batch.run(concurrency=8) == 0
    assert len(batch.results) == 200
    assert batch.summary["learned_limits"]["in_flight"] == 2
    assert clocked_sim.stats.limited["in_flight"] <= 5
    assert (
        batch.summary["refusals"]["in_flight"] == clocked_sim.stats.limited["in_flight"]
    )


async def test_requests_cancelled_at_a_stop_are_counted_as_slots_left_held(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real time: the deadline and the grace are the supervisor's timeouts.
    sim.faults = SOURCE.updated({"latency_ms": 60_000})
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(3))
    assert await batch.run(deadline_s=0.2, shutdown_grace_s=0.1) == 5
    assert batch.summary["slots_left_held"] == 3
    assert "Mira keeps their slots held for up to 5 minutes" in caplog.text


async def test_old_results_that_hold_no_answer_run_again_and_are_kept_aside(
    batch: Batch, clocked_sim: Simulator
) -> None:
    clocked_sim.faults = SOURCE
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(3))

    def old(job_id: str, content: str) -> str:
        body = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        record = {"custom_id": job_id, "response": {"status_code": 200, "body": body}}
        return json.dumps(record)

    batch.files.results.write_text(
        old("job-0", "Ошибка: upstream timed out") + "\n" + old("job-1", "fine") + "\n"
    )
    assert await batch.run() == 0
    ids = sorted(r["custom_id"] for r in batch.results)
    assert ids == ["job-0", "job-1", "job-2"]  # one record per id
    assert clocked_sim.stats.requests == 2  # job-0 again, and job-2
    aside = (batch.dir / "jobs.replaced.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in aside] == ["job-0"]
