"""Metrics for schedulers: the textfile parses and agrees with the summary; a real
Pushgateway (Debian's prometheus-pushgateway; skipped where absent) receives them."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeClock
from tests.helpers import run_settings, simple_jobs, write_jobs
from worker.app.run import execute_run
from worker.files.outputs import RunFiles
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def run(sim: Simulator, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    sim.faults = Faults(seed=3, p500=0.1)
    write_jobs(
        tmp_path / "jobs.jsonl",
        [*simple_jobs(30), "{broken", {"id": "no", "prompt": "x", "x_sim_status": 400}],
    )
    clock = FakeClock()
    files = RunFiles.default(
        str(tmp_path / "jobs.jsonl"),
        results=tmp_path / "jobs.results.jsonl",
        errors=tmp_path / "jobs.errors.jsonl",
        summary=tmp_path / "jobs.summary.json",
    )
    code = await execute_run(
        run_settings(sim.base_url, max_consecutive_failures=0, **overrides),
        files,
        out=io.StringIO(),
        clock=clock,
        sleep=clock.sleep,
    )
    summary: dict[str, Any] = json.loads(files.summary.read_text())
    assert summary["exit_code"] == code == 1
    return summary


def assert_agrees(found: dict[Any, float], summary: dict[str, Any]) -> None:
    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted({"input": "jobs", **labels}.items())))]

    assert value("mira_batch_jobs", outcome="succeeded") == summary["succeeded"] == 30
    assert value("mira_batch_jobs", outcome="invalid") == summary["invalid"] == 1
    assert value("mira_batch_jobs", outcome="failed") == summary["failed"] - 1
    assert value("mira_batch_jobs", outcome="not_attempted") == 0
    for status, count in summary["requests"]["by_status"].items():
        assert value("mira_batch_requests_total", status=status) == count
    for cause, count in summary["retries"].items():
        if cause != "total":
            assert value("mira_batch_retries_total", cause=cause) == count
    tokens = summary["tokens"]
    assert value("mira_batch_tokens_total", kind="prompt") == tokens["prompt"]
    assert value("mira_batch_tokens_total", kind="completion") == tokens["completion"]
    hits = value("mira_batch_cache_lookups_total", result="hit")
    misses = value("mira_batch_cache_lookups_total", result="miss")
    assert (hits, misses) == (summary["cache_hits"], summary["cache_misses"])
    assert value("mira_batch_cost_rub_total") == pytest.approx(summary["cost"]["total"])
    assert value("mira_batch_exit_code") == 1
    assert value("mira_batch_duration_seconds") > 0
    assert value("mira_batch_last_finished_timestamp_seconds") > 1.7e9


async def test_the_metrics_file_parses_and_its_counts_are_the_summarys(
    sim: Simulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "textfile" / "mira.prom"
    metrics.parent.mkdir()
    summary = await run(sim, tmp_path, metrics_file=metrics)
    assert_agrees(samples(metrics.read_text()), summary)
    assert [p.name for p in metrics.parent.iterdir()] == ["mira.prom"]  # atomic


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip("prometheus-pushgateway did not start")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_real_pushgateway_receives_the_same_metrics(
    sim: Simulator, tmp_path: Path, pushgateway: str
) -> None:
    summary = await run(sim, tmp_path, metrics_push=pushgateway)

    def scrape() -> str:
        with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as r:
            return str(r.read().decode())

    text = await asyncio.to_thread(scrape)
    pushed = {
        (name, tuple((k, v) for k, v in labels if k not in ("job", "instance"))): value
        for (name, labels), value in samples(text).items()
        if ("job", "mira-batch") in labels
    }
    assert_agrees(pushed, summary)
