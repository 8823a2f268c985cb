"""Daily messages per answer against Mira as its backend source behaves, with
default flags, in real time.

On Mira every request the server counts uses one of the day's messages (Pro
has 500), refused or not, so the figure that matters is requests per answer
written: 1.00 is the ideal. Each scenario runs the same jobs with default flags
and with the fixed flags that suit it best, on `mira-batch simulate --profile
mira`, and reports the default's share of their speed, its refusals, its
messages per answer, and its longest stall (seconds with no answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.mira import KEY, Sim, _mira_batch

PROFILE = ["--profile", "mira"]
NO_WINDOW = [*PROFILE, "--window-requests", "0"]
# The rehearsal's slot expiry (Mira: 300 s), told to the run as well.
EXPIRY_S = 20


@dataclass
class Case:
    """A server, its jobs, the fixed flags to compare with, and how to run."""

    name: str
    faults: list[str]
    jobs: int
    fixed: list[list[str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    shards: int = 1
    kill_after_s: float | None = None  # a SIGKILL first, then the run measured


CASES = [
    Case("3 slots, no faults", NO_WINDOW, 300, [["--concurrency", "3"]]),
    Case(
        "1% stray 429s (Retry-After 2)",
        [*NO_WINDOW, "--p429", "0.01", "--retry-after", "2"],
        300,
        [["--concurrency", "3"]],
    ),
    Case(
        "1% stray 429s, rerun after a SIGKILL",
        [*NO_WINDOW, "--p429", "0.01", "--retry-after", "2", "--slot-ttl-s", "20"],
        300,
        # The rehearsal's expiry is no tuning: the fixed flags are told it too.
        [["--concurrency", "3", "--slot-expiry-s", str(EXPIRY_S)]],
        flags=["--slot-expiry-s", str(EXPIRY_S)],
        kill_after_s=4,
    ),
    Case(
        "window 40 per 10 s",
        [*PROFILE, "--window-requests", "40", "--window-s", "10"],
        300,
        [["--concurrency", "3"], ["--concurrency", "3", "--rpm", "230"]],
    ),
    Case(
        "window 40 per 10 s (docs)",
        [
            *PROFILE,
            "--behaviour",
            "docs",
            "--window-requests",
            "40",
            "--window-s",
            "10",
        ],
        300,
        [["--concurrency", "3"], ["--concurrency", "3", "--rpm", "230"]],
    ),
    Case(
        "window 40 per 10 s, two shards",
        [*PROFILE, "--window-requests", "40", "--window-s", "10"],
        300,
        [["--concurrency", "3"], ["--concurrency", "3", "--rpm", "230"]],
        shards=2,
    ),
    Case(
        "leaked slots (2% dropped)",
        [
            *NO_WINDOW,
            *("--p-drop", "0.02", "--seed", "3"),  # a seed that drops 2% of 150
            *("--slot-ttl-s", str(EXPIRY_S)),
        ],
        150,
        [["--concurrency", "3", "--slot-expiry-s", str(EXPIRY_S)]],
        flags=["--slot-expiry-s", str(EXPIRY_S)],
    ),
    Case("3 slots, two shards", NO_WINDOW, 300, [["--concurrency", "3"]], shards=2),
]


def write_jobs(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"j{i}", "prompt": f"Question {i}?"}) + "\n")


def _env(sim: Sim) -> dict[str, str]:
    return {**os.environ, "MIRA_API_KEY": KEY, "MIRA_BASE_URL": f"{sim.url}/v1"}


def _start(sim: Sim, work: Path, flags: list[str], shard: str | None) -> Any:
    argv = [*_mira_batch(), "run", "jobs.jsonl", "--progress", "off", *flags]
    if shard is not None:
        argv += ["--shard", shard]
    return subprocess.Popen(
        argv,
        cwd=work,
        env=_env(sim),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _summaries(work: Path, shards: int) -> list[dict[str, Any]]:
    names = (
        ["jobs.summary.json"]
        if shards == 1
        else [f"jobs.shard-{k}-of-{shards}.summary.json" for k in range(shards)]
    )
    return [json.loads((work / name).read_text()) for name in names]


def _longest_stall_s(summary: dict[str, Any]) -> float:
    """The longest stretch of the timeline with no answer, seconds."""
    timeline = summary["timeline"]
    column = timeline["columns"].index("answers_per_s")
    longest = run = 0.0
    for row in timeline["rows"]:
        run = run + timeline["step_s"] if not row[column] else 0.0
        longest = max(longest, run)
    return longest


def run_case(sim: Sim, work: Path, case: Case, flags: list[str]) -> dict[str, Any]:
    """One measured run (after a SIGKILLed one, for such a case)."""
    sim.reset()
    for leftover in work.glob("jobs.*.json*"):
        leftover.unlink()
    fresh = ["--fresh", "--force", *flags]
    if case.kill_after_s is not None:
        killed = _start(sim, work, fresh, None)
        time.sleep(case.kill_after_s)
        killed.kill()
        killed.wait()
        fresh = flags  # the rerun resumes
    before = sim.stats()["requests"]
    started = time.perf_counter()
    procs = [
        _start(sim, work, fresh, None if case.shards == 1 else f"{k}/{case.shards}")
        for k in range(case.shards)
    ]
    codes = [proc.wait() for proc in procs]
    wall_s = time.perf_counter() - started
    summaries = _summaries(work, case.shards)
    stats = sim.stats()
    sent = sum(s["requests"]["sent"] for s in summaries)
    answers = sum(s["succeeded"] for s in summaries)
    refusals = sum(sum(s["refusals"].values()) for s in summaries)
    return {
        "flags": " ".join(flags) or "(defaults)",
        "exit_codes": codes,
        "wall_s": round(wall_s, 2),
        "answers": answers,
        "jobs_per_s": round(answers / wall_s, 2),
        "requests_at_the_server": stats["requests"] - before,
        "leaked_slots": stats["account"].get("leaked_slots", 0),
        "refusals": refusals,
        "messages_per_answer": round(sent / max(1, answers), 3),
        "longest_stall_s": max(_longest_stall_s(s) for s in summaries),
        "learned": [s["learned_limits"] for s in summaries],
    }


def _fixed(case: Case) -> Case:
    """The same server and jobs for the fixed flags: one process, and the same
    SIGKILL first where the case has one, so both measure the same rerun."""
    return Case(case.name, case.faults, case.jobs, kill_after_s=case.kill_after_s)


def run_cases(work: Path, port: int, names: list[str] | None = None) -> dict[str, Any]:
    """Every case (or those named); prints a line for each as it goes."""
    results: dict[str, Any] = {}
    for case in CASES:
        if names and case.name not in names:
            continue
        write_jobs(work / "jobs.jsonl", case.jobs)
        sim = Sim(port, case.faults)
        try:
            default = run_case(sim, work, case, case.flags)
            fixed = [run_case(sim, work, _fixed(case), flags) for flags in case.fixed]
        finally:
            sim.stop()
        best = max(f["jobs_per_s"] for f in fixed)
        ratio = round(default["jobs_per_s"] / best, 2)
        results[case.name] = {"default": default, "fixed": fixed, "ratio": ratio}
        print(
            f"{case.name:40} {ratio:4.2f} of the best fixed flags, "
            f"{default['messages_per_answer']:.3f} messages per answer, "
            f"{default['refusals']} refusals, longest stall "
            f"{default['longest_stall_s']:.0f} s, learned {default['learned']}",
            flush=True,
        )
    return results
