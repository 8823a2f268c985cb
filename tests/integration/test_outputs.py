"""Pre-flight path checks, the run lock and file modes, on the real command's code."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    read_jsonl,
    run_settings,
    simple_jobs,
    write_jobs,
)
from worker.app.run import execute_run
from worker.errors import ConfigError
from worker.files.outputs import RunFiles, RunLock
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


def run(sim: Simulator, files: RunFiles, **kw: Any) -> Any:
    return execute_run(run_settings(sim.base_url), files, out=io.StringIO(), **kw)


def files_in(tmp_path: Path, **paths: Path) -> RunFiles:
    return RunFiles(
        input=str(tmp_path / "jobs.jsonl"),
        results=paths.get("results", tmp_path / "r.jsonl"),
        errors=paths.get("errors", tmp_path / "e.jsonl"),
        summary=paths.get("summary", tmp_path / "s.json"),
    )


@pytest.mark.parametrize(
    ("paths", "problem"),
    [
        ({"errors": "r.jsonl"}, "same file"),
        ({"results": "jobs.jsonl"}, "same file as the input"),
        ({"summary": "e.jsonl"}, "same file"),
        ({"errors": "link-to-results"}, "same file"),
        ({"summary": "a-directory"}, "is a directory"),
        ({"summary": "read-only-dir/s.json"}, "not writable"),
    ],
)
async def test_output_path_conflicts_are_refused_before_any_request(
    sim: Simulator, tmp_path: Path, paths: dict[str, str], problem: str
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(3))
    (tmp_path / "link-to-results").symlink_to(tmp_path / "r.jsonl")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "read-only-dir").mkdir()
    (tmp_path / "read-only-dir").chmod(0o500)
    if os.geteuid() == 0 and "read-only" in str(paths):
        pytest.skip("root writes into a read-only directory")
    files = files_in(tmp_path, **{k: tmp_path / v for k, v in paths.items()})
    with pytest.raises(ConfigError, match=problem):
        await run(sim, files)
    assert sim.stats.requests == 0
    assert (tmp_path / "jobs.jsonl").read_bytes().count(b"\n") == 3


async def test_files_the_run_creates_are_private_and_a_rewrite_keeps_a_mode(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", [*simple_jobs(3), {"id": "bad", "x": 1}])
    files = files_in(tmp_path)
    assert await run(sim, files) == 1
    for path in (files.results, files.errors, files.summary):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    files.errors.chmod(0o640)
    files.summary.chmod(0o644)
    assert await run(sim, files, mode="retry_failed") == 1
    assert stat.S_IMODE(files.errors.stat().st_mode) == 0o640
    assert stat.S_IMODE(files.summary.stat().st_mode) == 0o644


async def test_a_second_run_on_the_same_files_is_refused_and_names_the_holder(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(3))
    files = files_in(tmp_path)
    with RunLock(files.results), pytest.raises(ConfigError) as refused:
        await run(sim, files)
    assert f"PID {os.getpid()}" in str(refused.value)
    assert sim.stats.requests == 0
    assert await run(sim, files) == 0  # released: the next run goes ahead


def test_the_lock_dies_with_its_process_even_on_sigkill(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from worker.files.outputs import RunLock; "
            "lock = RunLock(Path(sys.argv[1])); lock.__enter__(); "
            "print('held', flush=True); time.sleep(60)",
            str(results),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(ConfigError, match=f"PID {holder.pid}"), RunLock(results):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup of ours runs
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with RunLock(results):
        pass


async def test_two_identical_runs_at_once_send_each_job_once(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=20)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(100))
    files = files_in(tmp_path)
    outcomes = await asyncio.gather(
        run(sim, files), run(sim, files), return_exceptions=True
    )
    assert sorted(map(repr, outcomes)).count("0") == 1
    refused = [o for o in outcomes if isinstance(o, ConfigError)]
    assert len(refused) == 1
    assert len(read_jsonl(files.results)) == 100
    assert sim.stats.requests == 100
