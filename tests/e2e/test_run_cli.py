"""The real `mira-batch run` as a subprocess against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    OTHER_KEY,
    SENTINEL_KEY,
    assert_no_key,
    assert_outputs_clean,
    cli_env,
    read_jsonl,
    run_batch,
    run_cli,
    simple_jobs,
    write_jobs,
)
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.e2e


def mixed_jobs(n: int) -> list[dict[str, Any]]:
    """Both line shapes, with and without system prompts, all with metadata."""
    jobs: list[dict[str, Any]] = []
    for i in range(n):
        meta = {"row": i, "tag": f"t{i % 7}"}
        if i % 3 == 0:
            jobs.append(
                {
                    "custom_id": f"b-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "mira",
                        "messages": [
                            {"role": "user", "content": f"batch question {i}"}
                        ],
                    },
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


def summary_of(cwd: Path, stem: str = "jobs") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cwd / f"{stem}.summary.json").read_text())
    return data


async def test_faulty_server_still_yields_every_result_exactly_once(
    sim: Simulator, tmp_path: Path
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
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    result = await run_batch(
        tmp_path, sim.base_url, "--concurrency", "16", "--max-attempts", "10"
    )
    assert result.code == 0, result.stderr
    results = read_jsonl(tmp_path / "jobs.results.jsonl")
    assert read_jsonl(tmp_path / "jobs.errors.jsonl") == []
    by_id = {r["custom_id"]: r for r in results}
    assert len(results) == len(by_id) == 300
    for i, job in enumerate(jobs):
        job_id = job.get("custom_id", job.get("id"))
        record = by_id[job_id]
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
    assert stats.during_retry_after == 0
    assert stats.duplicate_successes == 0
    summary = summary_of(tmp_path)
    assert summary["stop_reason"] == "completed"
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (300, 300, 0)
    assert summary["not_attempted"] == 0
    assert summary["retries"]["total"] > 0
    assert summary["tokens"]["total"] > 0
    assert summary["requests"]["sent"] == stats.requests
    assert "mira-batch summary" in result.stderr
    assert_outputs_clean(tmp_path)


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [("revoke_after", 3, "auth_failed"), ("payment_after", 4, "payment_required")],
)
async def test_fatal_status_stops_fast_keeps_successes_and_resume_finishes(
    sim: Simulator, tmp_path: Path, fault: str, code: int, reason: str
) -> None:
    sim.faults = Faults(seed=3, latency_ms=20, latency_jitter_ms=20).updated(
        {fault: 60}
    )
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(400))
    result = await run_batch(
        tmp_path, sim.base_url, "--concurrency", "8", "--log-level", "debug"
    )
    exited_at = time.monotonic()
    assert result.code == code, result.stderr
    stopped_at = sim.stats.revoked_at or sim.stats.payment_stopped_at
    assert stopped_at is not None
    assert exited_at - stopped_at < 2.0 + 0.5  # process teardown is measured too
    late = sim.stats.after_revocation + sim.stats.after_payment_stop
    assert late <= 8
    results = read_jsonl(tmp_path / "jobs.results.jsonl")
    assert 0 < len(results) <= 60
    assert all(r["response"]["status_code"] == 200 for r in results)
    assert read_jsonl(tmp_path / "jobs.errors.jsonl") == []
    summary = summary_of(tmp_path)
    assert summary["stop_reason"] == reason
    assert summary["exit_code"] == code
    assert summary["succeeded"] == len(results)

    # The operator fixes the key or the balance and runs the same command again.
    sim.keys.add(OTHER_KEY)
    sim.faults = Faults(seed=3)
    again = await run_batch(tmp_path, sim.base_url, "--concurrency", "8", key=OTHER_KEY)
    assert again.code == 0, again.stderr
    final = read_jsonl(tmp_path / "jobs.results.jsonl")
    ids = [r["custom_id"] for r in final]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(400))
    assert sim.stats.duplicate_successes == 0
    assert summary_of(tmp_path)["skipped"] == len(results)
    assert_outputs_clean(tmp_path)


async def test_refused_jobs_are_sent_once_and_land_in_errors(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(plan="pro")
    refused: list[dict[str, Any]] = [
        {"id": "r400", "prompt": "x", "model": "no-such-model"},
        {"id": "r403", "prompt": "x", "model": "mira-max"},
        {"id": "r404", "prompt": "x", "x_sim_status": 404},
        {"id": "r422", "prompt": "x" * 32_001},
        {"id": "r413", "prompt": "x", "x_sim_status": 413},
    ]
    write_jobs(tmp_path / "jobs.jsonl", [*simple_jobs(20), *refused])
    result = await run_batch(tmp_path, sim.base_url)
    assert result.code == 1, result.stderr
    errors = {e["custom_id"]: e for e in read_jsonl(tmp_path / "jobs.errors.jsonl")}
    assert set(errors) == {"r400", "r403", "r404", "r422", "r413"}
    for job_id, record in errors.items():
        status = int(job_id[1:])
        assert record["response"]["status_code"] == status
        assert record["error"]["code"] == f"http_{status}"
        assert record["error"]["message"]
        assert record["attempts"] == 1
    assert sim.stats.requests == 25
    assert len(read_jsonl(tmp_path / "jobs.results.jsonl")) == 20
    assert summary_of(tmp_path)["failed"] == 5


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "sk-mira-123",
        SENTINEL_KEY.upper().replace("SK-MIRA-", "sk-live-"),
        SENTINEL_KEY + "ff",
        "not a key at all",
    ],
)
async def test_missing_or_malformed_key_exits_2_and_sends_nothing(
    sim: Simulator, tmp_path: Path, key: str | None
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(3))
    result = await run_cli(
        "run", "jobs.jsonl", cwd=tmp_path, env=cli_env(key=key, base_url=sim.base_url)
    )
    assert result.code == 2
    assert sim.stats.requests == 0
    assert "MIRA_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    if key:
        assert_no_key(result.stderr + result.stdout, key)
    assert not (tmp_path / "jobs.results.jsonl").exists()


async def test_broken_lines_are_recorded_and_the_rest_runs(
    sim: Simulator, tmp_path: Path
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
    write_jobs(tmp_path / "jobs.jsonl", lines)
    result = await run_batch(tmp_path, sim.base_url)
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    results = {r["custom_id"] for r in read_jsonl(tmp_path / "jobs.results.jsonl")}
    assert results == {"ok-1", "line-9", "ok-2"}
    errors = read_jsonl(tmp_path / "jobs.errors.jsonl")
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
    again = await run_batch(tmp_path, sim.base_url)
    assert again.code == 1
    assert len(read_jsonl(tmp_path / "jobs.errors.jsonl")) == 6
    assert len(read_jsonl(tmp_path / "jobs.results.jsonl")) == 3
    assert sim.stats.requests == 3


async def test_plain_http_to_another_host_is_refused(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(1))
    result = await run_batch(tmp_path, "http://api.vmira.ai/v1")
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
    seen: list[str] = []
    for index in range(3):
        env = cli_env(
            base_url=sim.base_url, JOB_COMPLETION_INDEX=str(index), MIRA_SHARD_COUNT="3"
        )
        result = await run_cli(
            "run", "jobs.jsonl", "--progress", "off", cwd=tmp_path, env=env
        )
        assert result.code in (0, 1), result.stderr
        stem = tmp_path / f"jobs.shard-{index}-of-3"
        seen += [r["custom_id"] for r in read_jsonl(Path(f"{stem}.results.jsonl"))]
    assert sorted(seen) == sorted(f"job-{i}" for i in range(60))
    bad = await run_batch(tmp_path, sim.base_url, "--shard", "3/3")
    assert bad.code == 2


async def test_a_server_echoing_the_key_does_not_get_it_into_files_or_logs(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(
        tmp_path / "jobs.jsonl",
        [{"id": "echo", "prompt": "x", "x_sim_status": 400, "x_sim_echo_auth": True}],
    )
    result = await run_batch(tmp_path, sim.base_url, "--log-level", "debug")
    assert result.code == 1
    (error,) = read_jsonl(tmp_path / "jobs.errors.jsonl")
    assert "[REDACTED]" in error["error"]["message"]
    assert_outputs_clean(tmp_path)


async def test_quota_spent_429_is_treated_as_payment_required(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(seed=6, p_quota=0.05)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(200))
    result = await run_batch(tmp_path, sim.base_url, "--concurrency", "4")
    assert result.code == 4, result.stderr
    assert summary_of(tmp_path)["stop_reason"] == "payment_required"
    assert "quota" in result.stderr
    assert read_jsonl(tmp_path / "jobs.errors.jsonl") == []
    assert sim.stats.by_status[429] == 1  # never retried
