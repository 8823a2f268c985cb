"""The real `mira-batch run` as a subprocess against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    SENTINEL_KEY,
    assert_no_key,
    assert_outputs_clean,
    cli_command,
    cli_env,
    finish_cli,
    read_jsonl,
    run_batch,
    run_cli,
    simple_jobs,
    start_cli,
    write_jobs,
)
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.e2e


def summary_of(cwd: Path, stem: str = "jobs") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cwd / f"{stem}.summary.json").read_text())
    return data


@pytest.mark.parametrize(
    "key",
    [
        None,
        SENTINEL_KEY + "ff",
    ],
)
async def test_missing_or_malformed_key_exits_2_and_sends_nothing(
    sim: Simulator, tmp_path: Path, key: str | None
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(3))
    result = await run_cli(
        "run",
        "jobs.jsonl",
        cwd=tmp_path,
        env=cli_env(key=key, base_url=sim.base_url),
        in_process=True,
    )
    assert result.code == 2
    assert sim.stats.requests == 0
    assert "MIRA_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    if key:
        assert_no_key(result.stderr + result.stdout, key)
    assert not (tmp_path / "jobs.results.jsonl").exists()


async def test_plain_http_to_another_host_is_refused(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(1))
    result = await run_batch(tmp_path, "http://api.vmira.ai/v1", in_process=True)
    assert result.code == 2
    assert "--allow-insecure-http" in result.stderr


async def test_standard_input_and_explicit_output_paths(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "in.jsonl", simple_jobs(5))
    env = cli_env(base_url=sim.base_url)
    with open(tmp_path / "in.jsonl", "rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            "run",
            "-",
            "-o",
            "out/r.jsonl",
            "--errors",
            "out/e.jsonl",
            "--summary",
            "out/s.json",
            "--progress",
            "off",
            cwd=tmp_path,
            env=env,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert len(read_jsonl(tmp_path / "out/r.jsonl")) == 5
    assert json.loads((tmp_path / "out/s.json").read_text())["succeeded"] == 5


async def test_debug_logs_in_json_never_hold_the_key(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(seed=5, p500=0.2, p429=0.1, retry_after=0.05, revoke_after=30)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(50))
    result = await run_batch(
        tmp_path,
        sim.base_url,
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "--progress",
        "log",
        "--progress-interval",
        "0.05",
        in_process=True,
    )
    assert result.code == 3
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records
    assert any(r["level"] == "debug" for r in records)
    assert_outputs_clean(tmp_path)


async def test_shards_split_the_file_without_overlap(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", [*simple_jobs(60), "{broken"])
    # As an Indexed Job runs them: both shards at once, on one account.
    *shards, bad = await asyncio.gather(
        *(
            run_batch(
                tmp_path,
                sim.base_url,
                in_process=True,
                JOB_COMPLETION_INDEX=str(k),
                MIRA_SHARD_COUNT="2",
            )
            for k in range(2)
        ),
        run_batch(tmp_path, sim.base_url, "--shard", "2/2", in_process=True),
    )
    seen: list[str] = []
    for index, result in enumerate(shards):
        assert result.code in (0, 1), result.stderr
        stem = tmp_path / f"jobs.shard-{index}-of-2"
        seen += [r["custom_id"] for r in read_jsonl(Path(f"{stem}.results.jsonl"))]
    assert sorted(seen) == sorted(f"job-{i}" for i in range(60))
    assert bad.code == 2


async def test_a_server_echoing_the_key_does_not_get_it_into_files_or_logs(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(
        tmp_path / "jobs.jsonl",
        [{"id": "echo", "prompt": "x", "x_sim_status": 400, "x_sim_echo_auth": True}],
    )
    result = await run_batch(
        tmp_path, sim.base_url, "--log-level", "debug", in_process=True
    )
    assert result.code == 1
    (error,) = read_jsonl(tmp_path / "jobs.errors.jsonl")
    assert "[REDACTED]" in error["error"]["message"]
    assert_outputs_clean(tmp_path)


@pytest.mark.slow
async def test_a_second_run_on_the_same_files_exits_2_naming_the_first(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=1000)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(30))
    env = cli_env(base_url=sim.base_url)
    first = await start_cli(
        "run",
        "jobs.jsonl",
        "--progress",
        "off",
        "--concurrency",
        "1",
        "--shutdown-grace",
        "0",
        cwd=tmp_path,
        env=env,
    )
    lock = tmp_path / "jobs.results.jsonl.lock"
    async with asyncio.timeout(10):
        while not (lock.exists() and lock.read_text().strip()):
            await asyncio.sleep(0.01)
    # In this process: the lock is a flock, which any other descriptor meets.
    second = await run_batch(tmp_path, sim.base_url, in_process=True)
    assert second.code == 2
    assert f"PID {first.pid}" in second.stderr
    first.send_signal(signal.SIGTERM)
    assert (await finish_cli(first, cwd=tmp_path)).code == 143
    # Every request came from the first run; the second sent nothing.
    assert sim.stats.requests <= 2


@pytest.mark.parametrize("echo", ["bearer", "bare"])
async def test_a_401_that_quotes_the_key_leaks_it_nowhere_in_json_mode(
    sim: Simulator, tmp_path: Path, echo: str
) -> None:
    sim.faults = Faults(revoke_after=5, echo_key=echo)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(20))
    result = await run_batch(
        tmp_path,
        sim.base_url,
        "--log-format",
        "json",
        "--log-level",
        "debug",
        in_process=True,
    )
    assert result.code == 3, result.stderr
    final = json.loads(result.stderr.splitlines()[-1])
    assert final["summary"]["stop_reason"] == "auth_failed"
    assert "[REDACTED]" in final["summary"]["message"]
    summary = json.loads((tmp_path / "jobs.summary.json").read_text())
    assert "[REDACTED]" in summary["message"]
    assert_outputs_clean(tmp_path)  # run_batch already checked both streams


async def test_a_csv_table_on_standard_input(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("Say {{ word }}")
    table = 'word,note\nhello,"a, note"\n"two\nlines",x\n'
    env = cli_env(base_url=sim.base_url)
    proc = await asyncio.create_subprocess_exec(
        *cli_command(
            "run",
            "-",
            "--input-format",
            "csv",
            "--template",
            "t.j2",
            "--progress",
            "off",
        ),
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(table.encode()), 30)
    assert proc.returncode == 0, err
    answers = sorted(
        r["response"]["body"]["choices"][0]["message"]["content"]
        for r in read_jsonl(tmp_path / "stdin.results.jsonl")
    )
    assert answers == ["Echo: Say hello", "Echo: Say two\nlines"]
