"""Durability and lifecycle: kills, signals, budgets, the failure guard, retries."""

from __future__ import annotations

import asyncio
import json
import random
import signal
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
    read_summary,
    run_cli,
    simple_jobs,
    start_cli,
    wait_for,
    write_jobs,
)
from worker.files.jobs import parse_job
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
        parsed = parse_job(orjson.dumps(job), n)
        out[parsed.payload] = parsed.id
    return out


def summary(cwd: Path) -> dict[str, Any]:
    return summary_file(cwd / "jobs.summary.json")


def summary_file(path: Path) -> dict[str, Any]:
    return read_summary(path)


def _grown_by(path: Path, nbytes: int) -> Callable[[], bool]:
    start = path.stat().st_size if path.exists() else 0
    return lambda: path.exists() and path.stat().st_size > start + nbytes


@pytest.mark.slow
async def test_sigkill_at_random_instants_then_resume_until_done(
    sim: Simulator, tmp_path: Path
) -> None:
    jobs = simple_jobs(400)
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    body_to_id = payloads_by_id(jobs)
    env = cli_env(base_url=sim.base_url)
    rng = random.Random(1234)
    results = tmp_path / "jobs.results.jsonl"

    def resent_since(before: dict[bytes, int]) -> set[str]:
        after = sim.times_seen()
        return {
            body_to_id[body]
            for body, count in after.items()
            if count > before.get(body, 0) and body in body_to_id
        }

    kills = 0
    for round_no in range(3):
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
            await wait_for(_grown_by(results, 2000))
        else:
            # At a random instant once answers are being written.
            await wait_for(_grown_by(results, 0))
            await asyncio.sleep(rng.uniform(0.0, 0.25))
        if proc.returncode is None:
            proc.kill()
            kills += 1
        code = (await finish_cli(proc, cwd=tmp_path)).code
        assert not resent_since(before) & held  # nothing the files held went again
        if code == 0:
            break
        assert code == -signal.SIGKILL
    assert kills == 3
    # The last resume needs no process of its own: nothing kills it.
    held, before = set(done_ids(tmp_path)), sim.times_seen()
    sim.faults = Faults(seed=9, p500=0.03, p_drop=0.01)
    code = (await run_cli(*RUN, cwd=tmp_path, env=env, in_process=True)).code
    assert not resent_since(before) & held
    assert code == 0
    results_ids = ids_in(tmp_path / "jobs.results.jsonl")
    error_ids = ids_in(tmp_path / "jobs.errors.jsonl")
    assert sorted(results_ids + error_ids) == sorted(f"job-{i}" for i in range(400))
    assert_outputs_clean(tmp_path)  # every line of both files parses


@pytest.mark.slow
async def test_a_hang_up_drains_in_flight_jobs_then_resume_completes(
    sim: Simulator, tmp_path: Path
) -> None:
    # A hang-up (a closed SSH session) stops as SIGTERM does. SIGTERM's drain as
    # a process is checked in tests/e2e/test_unattended.py (a start whose account
    # routes never answer); SIGINT and the grace period's edge cases run
    # in-process: tests/integration/test_lifecycle.py.
    sim.faults = Faults(seed=2, latency_ms=400)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(60))
    env = cli_env(base_url=sim.base_url)
    proc = await start_cli(*RUN, "--concurrency", "6", cwd=tmp_path, env=env)
    await wait_for(lambda: sim.stats.in_flight >= 3)
    sent_at_signal = sim.stats.requests
    proc.send_signal(signal.SIGHUP)
    result = await finish_cli(proc, cwd=tmp_path)
    assert result.code == 129, result.stderr  # 128 + SIGHUP, as a shell reports it
    # Every request in flight at the signal finished and was written; none started.
    assert sim.stats.requests == sent_at_signal
    assert len(ids_in(tmp_path / "jobs.results.jsonl")) == sent_at_signal
    assert summary(tmp_path)["stop_reason"] == "interrupted"
    assert summary(tmp_path)["exit_code"] == 129

    sim.faults = Faults(seed=2)
    again = await run_cli(*RUN, cwd=tmp_path, env=env, in_process=True)
    assert again.code == 0
    assert sorted(done_ids(tmp_path)) == sorted(f"job-{i}" for i in range(60))
    assert sim.stats.duplicate_successes == 0


async def test_sigterm_while_an_idle_pipe_feeds_standard_input(
    sim: Simulator, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cli_command("run", "-", "--progress", "off", "--shutdown-grace", "600"),
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
    proc.send_signal(signal.SIGTERM)
    # Nothing is in flight: the 600 s grace is not waited (10 s guards a hang).
    await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 143
    proc.stdin.close()
    assert summary_file(tmp_path / "stdin.summary.json")["stop_reason"] == "interrupted"


@pytest.mark.slow
async def test_sigkill_during_a_cached_run_loses_and_corrupts_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    import sqlite3

    sim.faults = Faults(latency_ms=20)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(150))
    write_jobs(tmp_path / "other" / "jobs.jsonl", simple_jobs(80, prefix="other"))
    env = cli_env(base_url=sim.base_url)
    cache = str(tmp_path / "answers.sqlite")
    cached = ("--cache", cache, "--concurrency", "16")
    proc = await start_cli(*RUN, *cached, cwd=tmp_path, env=env)
    await wait_for(_grown_by(tmp_path / "jobs.results.jsonl", 2000))
    proc.kill()
    assert (await finish_cli(proc, cwd=tmp_path)).code == -signal.SIGKILL
    # A fresh output set over the same cache, what was answered coming from it,
    # while a second process runs other jobs on the same cache file at once.
    procs = [
        await start_cli(*RUN, *cached, "--fresh", "--force", cwd=tmp_path, env=env),
        await start_cli(*RUN, *cached, cwd=tmp_path / "other", env=env),
    ]
    assert [(await finish_cli(p)).code for p in procs] == [0, 0]
    assert sorted(ids_in(tmp_path / "jobs.results.jsonl")) == sorted(
        f"job-{i}" for i in range(150)
    )
    assert len(ids_in(tmp_path / "other" / "jobs.results.jsonl")) == 80
    summary = json.loads((tmp_path / "jobs.summary.json").read_text())
    assert summary["cache_hits"] > 0
    assert summary["cache_hits"] + summary["cache_misses"] == 150
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = db.execute("SELECT count(*) FROM answers").fetchone()[0]
    assert stored == 150 + 80
