"""Default flags against Mira's real limits, on the bundled simulator, in real time.

For each scenario `mira-batch simulate` serves Mira's limits (3 requests in flight,
Retry-After 5, ~300 ms log-normal latency, and sliding windows of several
sizes); the same jobs then run with default flags and with fixed flags tuned by
hand. Reported: jobs per second over each run's wall time, the default's share
of the best fixed flags, and the share of requests answered 429 (by kind).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY = "sk-mira-" + "d" * 40  # the simulator's throwaway key
MIRA_CAP = [
    "--max-in-flight",
    "3",
    "--in-flight-retry-after",
    "5",
    "--latency-ms",
    "300",
    "--latency-sigma",
    "0.4",
]


@dataclass
class Scenario:
    """One server set-up, the jobs it gets, and the fixed flags to compare with."""

    name: str
    faults: list[str]
    jobs: int
    fixed: list[list[str]] = field(default_factory=list)
    shards: int = 1


SCENARIOS = [
    Scenario(
        "in-flight cap 3",
        MIRA_CAP,
        150,
        [["--concurrency", "3"], ["--concurrency", "2"]],
    ),
    Scenario(
        "cap + window 20 per 5 s",
        [*MIRA_CAP, "--window-requests", "20", "--window-s", "5"],
        150,
        [["--concurrency", "3"], ["--concurrency", "3", "--rpm", "240"]],
    ),
    Scenario(
        "cap + window 60 per 60 s (Mira)",
        [*MIRA_CAP, "--window-requests", "60", "--window-s", "60"],
        75,
        [["--concurrency", "3"], ["--concurrency", "3", "--rpm", "60"]],
    ),
    Scenario("two shards on one account", MIRA_CAP, 150, shards=2),
]


def _mira_batch() -> list[str]:
    script = Path(sys.executable).with_name("mira-batch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker"]


class Sim:
    """`mira-batch simulate` in a process of its own."""

    def __init__(self, port: int, faults: list[str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [*_mira_batch(), "simulate", "--port", str(port), "--key", KEY, *faults],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the simulator did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=5) as r:
            data: dict[str, Any] = json.load(r)
            return data

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/_sim/reset", method="POST")
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def _run(sim: Sim, work: Path, flags: list[str], shards: int) -> dict[str, Any]:
    sim.reset()
    env = {**os.environ, "MIRA_API_KEY": KEY, "MIRA_BASE_URL": f"{sim.url}/v1"}
    base = [*_mira_batch(), "run", "jobs.jsonl", "--progress", "off", "--fresh"]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*base, "--force", *flags, *(["--shard", f"{k}/{shards}"] * (shards > 1))],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for k in range(shards)
    ]
    codes = [proc.wait() for proc in procs]
    wall_s = time.perf_counter() - started
    stats = sim.stats()
    limited = stats["by_status"].get("429", 0)
    return {
        "flags": " ".join(flags) or "(defaults)",
        "exit_codes": codes,
        "wall_s": round(wall_s, 2),
        "requests": stats["requests"],
        "answered_429": limited,
        "share_429": round(limited / max(1, stats["requests"]), 3),
        "429_by_kind": stats.get("limited", {}),
    }


def write_jobs(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"j{i}", "prompt": f"Question {i}?"}) + "\n")


def run_scenarios(work: Path, port: int) -> dict[str, Any]:
    """Every scenario; prints a table as it goes."""
    results: dict[str, Any] = {}
    best_single: float | None = None
    for scenario in SCENARIOS:
        write_jobs(work / "jobs.jsonl", scenario.jobs)
        sim = Sim(port, scenario.faults)
        try:
            default = _run(sim, work, [], scenario.shards)
            fixed = [_run(sim, work, flags, 1) for flags in scenario.fixed]
        finally:
            sim.stop()
        rate = scenario.jobs / default["wall_s"]
        rates = [scenario.jobs / f["wall_s"] for f in fixed]
        if scenario.shards == 1 and scenario.name.startswith("in-flight"):
            best_single = max(rates)
        best = max(rates) if rates else best_single
        assert best is not None
        results[scenario.name] = {
            "jobs": scenario.jobs,
            "default": default,
            "fixed": fixed,
            "ratio_to_best_fixed": round(rate / best, 2),
        }
        print(
            f"{scenario.name:34} default {rate:5.2f} jobs/s, best fixed "
            f"{best:5.2f}: ratio {rate / best:.2f}, 429s "
            f"{default['answered_429']}/{default['requests']} "
            f"({100 * default['share_429']:.1f}%) {default['429_by_kind']}"
        )
    return results
