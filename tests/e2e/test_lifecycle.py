"""Durability and lifecycle: kills, signals, budgets, the failure guard, retries."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import (
    assert_outputs_clean,
    cli_command,
    cli_env,
    finish_cli,
    read_jsonl,
    run_cli,
    simple_jobs,
    start_cli,
    write_jobs,
)
from worker.models import parse_job
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.e2e

RUN = ("run", "jobs.jsonl", "--progress", "off")


def ids_in(path: Path) -> list[str]:
    """custom_ids of every whole line (a torn last line is ignored, as on resume)."""
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            try:
                ids.append(json.loads(line)["custom_id"])
            except ValueError:
                continue
    return ids


def done_ids(cwd: Path) -> list[str]:
    return ids_in(cwd / "jobs.results.jsonl") + ids_in(cwd / "jobs.errors.jsonl")


def payloads_by_id(jobs: list[dict[str, Any]]) -> dict[bytes, str]:
    """The exact request body the worker sends for each job, mapped to its id."""
    out = {}
    for n, job in enumerate(jobs, start=1):
        parsed = parse_job(orjson.dumps(job), n, default_model="mira")
        out[parsed.payload] = parsed.id
    return out


def summary(cwd: Path) -> dict[str, Any]:
    return summary_file(cwd / "jobs.summary.json")


def summary_file(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _grown_by(path: Path, nbytes: int) -> Callable[[], bool]:
    start = path.stat().st_size if path.exists() else 0
    return lambda: path.exists() and path.stat().st_size > start + nbytes


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_sigkill_at_random_instants_then_resume_until_done(
    sim: Simulator, tmp_path: Path
) -> None:
    jobs = simple_jobs(2000)
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    body_to_id = payloads_by_id(jobs)
    env = cli_env(base_url=sim.base_url)
    rng = random.Random(1234)
    kills, code = 0, None
    for round_no in range(12):
        held = set(done_ids(tmp_path))
        before = sim.times_seen()
        burst = round_no == 2
        sim.faults = (
            Faults(seed=round_no, p500=0.03, p_drop=0.01)
            if burst
            else Faults(
                seed=round_no,
                latency_ms=5,
                latency_jitter_ms=40,
                p500=0.03,
                p_drop=0.01,
            )
        )
        proc = await start_cli(*RUN, "--concurrency", "16", cwd=tmp_path, env=env)
        if burst:
            # Kill while results pour in with no latency at all: a write burst.
            await wait_for(_grown_by(tmp_path / "jobs.results.jsonl", 2000))
        else:
            await asyncio.sleep(rng.uniform(0.35, 0.9))
        if proc.returncode is None and kills < 6:
            proc.kill()
            kills += 1
        code = (await finish_cli(proc, cwd=tmp_path)).code
        # Nothing the files already held was sent again.
        after = sim.times_seen()
        resent = {
            body_to_id[body]
            for body, count in after.items()
            if count > before.get(body, 0) and body in body_to_id
        }
        assert not resent & held
        if code == 0:
            break
        assert code == -signal.SIGKILL
    assert kills >= 5
    assert code == 0
    results_ids = ids_in(tmp_path / "jobs.results.jsonl")
    error_ids = ids_in(tmp_path / "jobs.errors.jsonl")
    assert sorted(results_ids + error_ids) == sorted(f"job-{i}" for i in range(2000))
    assert_outputs_clean(tmp_path)  # every line of both files parses


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)]
)
async def test_signal_drains_in_flight_jobs_then_resume_completes(
    sim: Simulator, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    sim.faults = Faults(seed=2, latency_ms=400)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(60))
    env = cli_env(base_url=sim.base_url)
    proc = await start_cli(*RUN, "--concurrency", "6", cwd=tmp_path, env=env)
    await wait_for(lambda: sim.stats.in_flight >= 3)
    sent_at_signal = sim.stats.requests
    signalled = time.monotonic()
    proc.send_signal(signum)
    result = await finish_cli(proc, cwd=tmp_path)
    assert time.monotonic() - signalled < 10 + 2
    assert result.code == code, result.stderr
    # Every request in flight at the signal finished and was written; none started.
    assert sim.stats.requests == sent_at_signal
    assert len(ids_in(tmp_path / "jobs.results.jsonl")) == sent_at_signal
    assert summary(tmp_path)["stop_reason"] == "interrupted"
    assert summary(tmp_path)["exit_code"] == code

    sim.faults = Faults(seed=2)
    again = await run_cli(*RUN, cwd=tmp_path, env=env)
    assert again.code == 0
    assert sorted(done_ids(tmp_path)) == sorted(f"job-{i}" for i in range(60))
    assert sim.stats.duplicate_successes == 0


async def test_grace_period_over_cancels_what_is_still_in_flight(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=30_000)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(10))
    proc = await start_cli(
        *RUN,
        "--shutdown-grace",
        "0.3",
        cwd=tmp_path,
        env=cli_env(base_url=sim.base_url),
    )
    await wait_for(lambda: sim.stats.in_flight >= 3)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    result = await finish_cli(proc, cwd=tmp_path)
    assert result.code == 143
    assert time.monotonic() - signalled < 0.3 + 2
    assert read_jsonl(tmp_path / "jobs.results.jsonl") == []
    assert read_jsonl(tmp_path / "jobs.errors.jsonl") == []


async def test_second_signal_cancels_at_once(sim: Simulator, tmp_path: Path) -> None:
    sim.faults = Faults(latency_ms=30_000)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(10))
    proc = await start_cli(*RUN, cwd=tmp_path, env=cli_env(base_url=sim.base_url))
    await wait_for(lambda: sim.stats.in_flight >= 3)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.2)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    result = await finish_cli(proc, cwd=tmp_path)
    assert result.code == 130
    assert time.monotonic() - signalled < 2


async def test_long_retry_after_stops_with_exit_5_and_resume_completes(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(daily_cap=25, latency_ms=5)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(80))
    env = cli_env(base_url=sim.base_url)
    result = await run_cli(*RUN, "--concurrency", "4", cwd=tmp_path, env=env)
    assert result.code == 5, result.stderr
    assert summary(tmp_path)["stop_reason"] == "rate_limit_budget"
    assert "3600" in result.stderr
    assert sim.stats.during_retry_after == 0  # nothing started after the long 429
    assert read_jsonl(tmp_path / "jobs.errors.jsonl") == []
    sim.faults = Faults()
    again = await run_cli(*RUN, cwd=tmp_path, env=env)
    assert again.code == 0
    assert sorted(done_ids(tmp_path)) == sorted(f"job-{i}" for i in range(80))


async def test_deadline_stops_with_exit_5_and_nothing_starts_after_it(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=100)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(200))
    env = cli_env(base_url=sim.base_url)
    result = await run_cli(
        *RUN, "--concurrency", "4", "--deadline", "1", cwd=tmp_path, env=env
    )
    assert result.code == 5, result.stderr
    assert summary(tmp_path)["stop_reason"] == "deadline"
    first, last = sim.stats.first_arrival_at, sim.stats.last_arrival_at
    assert first is not None
    assert last is not None
    assert last - first <= 1.0 + 0.1
    written = len(done_ids(tmp_path))
    assert written == sim.stats.requests  # in-flight requests finished
    sim.faults = Faults()
    again = await run_cli(*RUN, cwd=tmp_path, env=env)
    assert again.code == 0
    assert len(done_ids(tmp_path)) == 200


async def test_token_budget_stops_with_exit_5_once_spent(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(100))
    env = cli_env(base_url=sim.base_url)
    result = await run_cli(
        *RUN, "--concurrency", "2", "--token-budget", "300", cwd=tmp_path, env=env
    )
    assert result.code == 5, result.stderr
    spent = summary(tmp_path)
    assert spent["stop_reason"] == "token_budget"
    per_job = spent["tokens"]["total"] / spent["succeeded"]
    # Requests stop as soon as the budget is reached; at most the ones in flight finish.
    assert 300 <= spent["tokens"]["total"] <= 300 + 3 * per_job
    again = await run_cli(*RUN, cwd=tmp_path, env=env)
    assert again.code == 0
    assert len(done_ids(tmp_path)) == 100


async def test_systematic_failure_stops_after_the_limit_not_the_whole_file(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(1000))
    env = cli_env(base_url=sim.base_url + "/wrong")
    result = await run_cli(
        *RUN,
        "--concurrency",
        "4",
        "--max-consecutive-failures",
        "20",
        cwd=tmp_path,
        env=env,
    )
    assert result.code == 6, result.stderr
    assert 20 <= sim.stats.by_status[404] <= 24
    assert "404" in result.stderr
    assert "--retry-failed" in result.stderr
    assert summary(tmp_path)["stop_reason"] == "systematic_failure"
    errors = read_jsonl(tmp_path / "jobs.errors.jsonl")
    assert 20 <= len(errors) <= 24
    assert {e["error"]["code"] for e in errors} == {"http_404"}


async def test_retry_failed_turns_failures_into_results_once_the_server_recovers(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(p503=1)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(30))
    env = cli_env(base_url=sim.base_url)
    first = await run_cli(*RUN, "--max-attempts", "2", cwd=tmp_path, env=env)
    assert first.code == 1
    errors = read_jsonl(tmp_path / "jobs.errors.jsonl")
    assert len(errors) == 30
    assert {e["error"]["code"] for e in errors} == {"retries_exhausted"}
    assert {e["response"]["status_code"] for e in errors} == {503}
    sim.faults = Faults()
    plain = await run_cli(*RUN, cwd=tmp_path, env=env)
    assert plain.code == 1  # a plain resume does not retry failed jobs
    assert sim.stats.by_status[200] == 0
    fixed = await run_cli(*RUN, "--retry-failed", cwd=tmp_path, env=env)
    assert fixed.code == 0, fixed.stderr
    assert read_jsonl(tmp_path / "jobs.errors.jsonl") == []
    assert sorted(ids_in(tmp_path / "jobs.results.jsonl")) == sorted(
        f"job-{i}" for i in range(30)
    )


async def test_fresh_needs_force_to_discard_results(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(5))
    env = cli_env(base_url=sim.base_url)
    assert (await run_cli(*RUN, cwd=tmp_path, env=env)).code == 0
    refused = await run_cli(*RUN, "--fresh", cwd=tmp_path, env=env)
    assert refused.code == 2
    assert "--force" in refused.stderr
    assert sim.stats.requests == 5
    redone = await run_cli(*RUN, "--fresh", "--force", cwd=tmp_path, env=env)
    assert redone.code == 0
    assert len(read_jsonl(tmp_path / "jobs.results.jsonl")) == 5
    assert sim.stats.requests == 10


async def test_sigterm_while_an_idle_pipe_feeds_standard_input(
    sim: Simulator, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cli_command("run", "-", "--progress", "off", "--shutdown-grace", "0.5"),
        cwd=tmp_path,
        env=cli_env(base_url=sim.base_url),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"".join(orjson.dumps(job) + b"\n" for job in simple_jobs(5)))
    await proc.stdin.drain()
    # The producer goes quiet without closing the pipe; the results arrive.
    await wait_for(lambda: len(ids_in(tmp_path / "stdin.results.jsonl")) == 5)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 143
    assert time.monotonic() - signalled < 0.5 + 2
    proc.stdin.close()
    assert summary_file(tmp_path / "stdin.summary.json")["stop_reason"] == "interrupted"
