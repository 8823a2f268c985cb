"""`mira-batch report` over a million-job run's files: how long it takes, how much
memory, and how big the page is (the real command, on synthetic outcome files)."""

from __future__ import annotations

import json
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.mira import _mira_batch
from worker.report.stats import RunStats
from worker.report.timeline import Gauges, TimelineSampler

JOBS = 1_000_000
FAILED = 20_000


def _write_outcomes(work: Path) -> None:
    body = {
        "id": "chatcmpl-x",
        "model": "mira",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "An answer " * 20},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52},
    }
    with open(work / "jobs.results.jsonl", "w") as fh:
        for n in range(JOBS):
            record = {
                "id": f"r{n}",
                "custom_id": f"job-{n}",
                "response": {"status_code": 200, "request_id": None, "body": body},
                "error": None,
                "attempts": 1 + n % 3 // 2,
                "latency_s": round(0.2 + (n * 7919 % 100_003) / 20_000, 4),
            }
            fh.write(json.dumps(record) + "\n")
    with open(work / "jobs.errors.jsonl", "w") as fh:
        for n in range(FAILED):
            error = {"code": f"http_{400 + n % 30}", "message": "refused " * 30}
            fh.write(json.dumps({"custom_id": f"failed-{n}", "error": error}) + "\n")


def _write_summary(work: Path) -> None:
    timeline, stats = TimelineSampler(("in_flight", "window", "other")), RunStats()
    timeline.sample(0.0, stats, Gauges(0, 3, {}, 0.0))
    for step in range(1, 50_001):  # a sample a second for 14 hours
        stats.succeeded += 20
        stats.latency.add(0.3 + (step % 17) / 10)
        timeline.sample(float(step), stats, Gauges(3, 3, {"in_flight": step // 50}, 0))
    summary = {
        "stop_reason": "completed",
        "exit_code": 1,
        "next_step": "read the errors file; fix the cause, then --retry-failed",
        "succeeded": JOBS,
        "failed": FAILED,
        "timeline": timeline.export().model_dump(),
    }
    (work / "jobs.summary.json").write_text(json.dumps(summary))


def run_report(work: Path) -> dict[str, Any]:
    """Write the files, then time the command; prints a line."""
    (work / "jobs.jsonl").write_text("")
    _write_outcomes(work)
    _write_summary(work)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([*_mira_batch(), "report", "jobs.jsonl"], cwd=work, check=True)
    elapsed_s = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    page = work / "jobs.report.html"
    result = {
        "jobs": JOBS,
        "results_mb": round((work / "jobs.results.jsonl").stat().st_size / 2**20, 1),
        "seconds": round(elapsed_s, 2),
        "peak_rss_mb": round(max(before, peak_kb) / 1024, 1),
        "page_kb": round(page.stat().st_size / 1024, 1),
    }
    print(
        f"report of {JOBS:,} jobs ({result['results_mb']} MB of results): "
        f"{result['seconds']} s, peak RSS {result['peak_rss_mb']} MB, "
        f"page {result['page_kb']} KB"
    )
    return result
