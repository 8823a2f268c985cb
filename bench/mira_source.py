"""Default flags against Mira as its backend source behaves (`--profile mira`),
in real time: window refusals that count, leaked slots, a run right after a
hard stop, 200s that are not answers, answers past the server's cut, and the
daily cap. Times the server scales down for a bench (the 300 s slot expiry,
the 30 s cut) are said beside each figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.mira import KEY, Sim, _mira_batch, _run

PROFILE = ["--profile", "mira"]
# The profile's window (60 per 60 s) would bound every scenario that is not about
# it at one job a second; those turn it off.
NO_WINDOW = [*PROFILE, "--window-requests", "0"]


def _jobs(path: Path, n: int, long_every: int = 0, long_ms: int = 0) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            job: dict[str, Any] = {"id": f"j{i}", "prompt": f"Question number {i}?"}
            if long_every and i % long_every == 0:
                job["x_sim_latency_ms"] = long_ms  # a long answer
            fh.write(json.dumps(job) + "\n")


# The rehearsal's slot expiry (Mira: 300 s), told to the run as an operator
# rehearsing with a short one would.
TOLD = ("--slot-expiry-s", "20")


def _once(sim: Sim, work: Path, *flags: str, reset: bool = True) -> dict[str, Any]:
    """One default run; its summary and what the server counted."""
    if reset:
        sim.reset()
    env = {**os.environ, "MIRA_API_KEY": KEY, "MIRA_BASE_URL": f"{sim.url}/v1"}
    code = subprocess.call(
        [*_mira_batch(), "run", "jobs.jsonl", "--progress", "off", *flags],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    summary: dict[str, Any] = json.loads((work / "jobs.summary.json").read_text())
    return {"exit_code": code, "summary": summary, "server": sim.stats()}


def _daily_refusals(server: dict[str, Any]) -> int:
    limited = server["limited"]
    return int(limited.get("in_flight", 0) + limited.get("gpu_queue", 0))


def _results(work: Path) -> list[dict[str, Any]]:
    path = work / "jobs.results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def window_that_counts(work: Path, port: int) -> dict[str, Any]:
    """Refusals stay in the window, whose 429 says its whole length."""
    _jobs(work / "jobs.jsonl", 90)
    sim = Sim(port, [*PROFILE, "--window-requests", "30", "--window-s", "15"])
    try:
        default = _run(sim, work, [], 1)
        refusals = _daily_refusals(sim.stats())
        fixed = [
            _run(sim, work, flags, 1)
            for flags in (
                ["--concurrency", "3", "--rpm", "120"],
                ["--concurrency", "3"],
            )
        ]
    finally:
        sim.stop()
    best = min(f["wall_s"] for f in fixed)
    return {
        "ratio_to_best_fixed": round(best / default["wall_s"], 2),
        "daily_messages_on_refusals": refusals,
        "default": default,
        "fixed": fixed,
    }


def one_leaked_slot(work: Path, port: int) -> dict[str, Any]:
    """A slot leaked before the run and renewed by its every acquire: a cap of 2."""
    _jobs(work / "jobs.jsonl", 300)
    sim = Sim(port, [*NO_WINDOW, "--leaked-slots", "1"])
    try:
        default = _run(sim, work, [], 1)
        refusals = sim.stats()["limited"].get("in_flight", 0)
        fixed = _run(sim, work, ["--concurrency", "2"], 1)
    finally:
        sim.stop()
    return {
        "ratio_to_concurrency_2": round(fixed["wall_s"] / default["wall_s"], 2),
        "refusals": refusals,
        "default": default,
        "fixed": fixed,
    }


def after_a_hard_stop(work: Path, port: int) -> dict[str, Any]:
    """A run killed with 3 requests in flight leaks their slots, freed 20 s
    (Mira: 300 s) after its last acquire; the same command again right away.
    Compared, once the slots are free, with the same jobs on a clean account."""
    _jobs(work / "jobs.jsonl", 150)
    sim = Sim(port, [*NO_WINDOW, "--slot-ttl-s", "20"])
    try:
        sim.reset()
        env = {**os.environ, "MIRA_API_KEY": KEY, "MIRA_BASE_URL": f"{sim.url}/v1"}
        killed = subprocess.Popen(
            [
                *_mira_batch(),
                "run",
                "jobs.jsonl",
                "--progress",
                "off",
                "--fresh",
                "--force",
                *TOLD,
            ],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        killed.kill()
        killed.wait()
        before = sim.stats()
        rerun = _once(sim, work, *TOLD, reset=False)
        refusals = _daily_refusals(rerun["server"]) - _daily_refusals(before)
        clean = _once(sim, work, "--fresh", "--force", *TOLD)
    finally:
        sim.stop()
    clean_rate = 150 / clean["summary"]["elapsed_s"]
    jobs_rerun = rerun["summary"]["succeeded"]
    return {
        "leaked_by_the_kill": before["account"].get("leaked_slots", 0),
        "daily_messages_on_refusals": refusals,
        "learned_in_flight": rerun["summary"]["learned_limits"]["in_flight"],
        "final_concurrency": rerun["summary"]["concurrency"]["final"],
        "jobs_in_rerun": jobs_rerun,
        # What the rerun took beyond the same jobs on a clean account: the
        # slots' expiry (about 20 s after the kill) and the last pause's overshoot.
        "waited_s": round(rerun["summary"]["elapsed_s"] - jobs_rerun / clean_rate, 1),
    }


def not_answers(work: Path, port: int) -> dict[str, Any]:
    """10% upstream-error texts and 5% moderated answers, in 200s."""
    _jobs(work / "jobs.jsonl", 80)
    sim = Sim(port, [*NO_WINDOW, "--p-upstream-error", "0.1", "--p-moderated", "0.05"])
    try:
        run = _once(sim, work, "--fresh", "--force")
    finally:
        sim.stop()
    texts = [
        r["response"]["body"]["choices"][0]["message"]["content"]
        for r in _results(work)
    ]
    bad = [t for t in texts if t.startswith(("Ошибка", "I cannot"))]
    return {
        "bad_answers_sent": run["server"]["account"].get("bad_answers", 0),
        "bad_answers_recorded_as_results": len(bad),
        "real_answers": len(texts) - len(bad),
        "content_filtered": run["summary"]["failed"],
        "exit_code": run["exit_code"],
    }


def long_answers(work: Path, port: int) -> dict[str, Any]:
    """Answers longer than the server's cut (2 s here; Mira: 30 s). Each cut
    leaks a slot, freed 20 s (Mira: 300 s) after the last acquire."""
    _jobs(work / "jobs.jsonl", 40, long_every=10, long_ms=4000)
    sim = Sim(port, [*NO_WINDOW, "--server-timeout-s", "2", "--slot-ttl-s", "20"])
    try:
        run = _once(sim, work, "--fresh", "--force", *TOLD)
    finally:
        sim.stop()
    return {
        "long_jobs": 4,
        "answered": len(_results(work)),
        "jobs": 40,
        "timeouts_408": run["server"]["by_status"].get("408", 0),
        "streams": run["server"]["account"].get("streams", 0),
        "slots_leaked": run["server"]["account"].get("leaked_slots", 0),
    }


def daily_cap(work: Path, port: int) -> dict[str, Any]:
    """A cap of 40 messages a day, 60 jobs; then a rerun the same day."""
    _jobs(work / "jobs.jsonl", 60)
    sim = Sim(port, [*NO_WINDOW, "--daily-cap", "40"])
    try:
        first = _once(sim, work, "--fresh", "--force")
        kept = len(_results(work))
        before = sim.stats()["requests"]
        rerun = _once(sim, work, reset=False)
        sent_again = sim.stats()["requests"] - before
    finally:
        sim.stop()
    return {
        "exit_code": first["exit_code"],
        "stop_reason": first["summary"]["stop_reason"],
        "answers_kept": kept,
        "cap": 40,
        "rerun_exit_code": rerun["exit_code"],
        "rerun_requests": sent_again,
    }


SCENARIOS = {
    "window whose refusals count (30 per 15 s)": window_that_counts,
    "one leaked slot (300 jobs)": one_leaked_slot,
    "right after a hard stop (3 slots held)": after_a_hard_stop,
    "200s that are not answers (80 jobs)": not_answers,
    "answers past the server's cut": long_answers,
    "daily cap of 40 (60 jobs)": daily_cap,
}


def run_source_scenarios(
    work: Path, port: int, only: str | None = None
) -> dict[str, Any]:
    """Every scenario (or those whose name holds `only`); prints each one's
    figures as it goes."""
    results = {}
    for name, scenario in SCENARIOS.items():
        if only is not None and only not in name:
            continue
        figures = scenario(work, port)
        results[name] = figures
        shown = {k: v for k, v in figures.items() if not isinstance(v, dict)}
        print(f"{name}: {shown}", flush=True)
    return results
