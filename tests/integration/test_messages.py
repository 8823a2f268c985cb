"""Every message buys an answer: default flags against Mira as its backend
source behaves, on one fake clock for the server and the run. Each refusal
is one of the day's messages, so the figure is requests per answer written.
(bench/run.py messages measures the same scenarios in real time.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.batch import Batch
from tests.fakes import FakeClock
from tests.helpers import simple_jobs, write_jobs
from worker.sim.faults import Faults
from worker.sim.server import Simulator

MIRA = Faults(
    behaviour="source",
    seed=11,
    max_in_flight=3,
    latency_ms=300,
    latency_sigma=0.4,
)


async def timed_run(
    sim: Simulator, directory: Path, clock: FakeClock, jobs: int, **settings: Any
) -> tuple[dict[str, Any], float]:
    """A fresh run of `jobs` jobs: its summary, and how long it took on the
    fake clock."""
    directory.mkdir(exist_ok=True)
    write_jobs(directory / "jobs.jsonl", simple_jobs(jobs))
    batch = Batch(sim, directory)
    batch.clock = clock
    sim.reset()
    started = clock.now
    code = await batch.run(**settings)
    assert code == 0
    return batch.summary, clock.now - started


async def test_stray_429s_are_pauses_and_teach_no_rate(
    clocked_sim: Simulator,
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clocked_sim.faults = MIRA.updated({"p429": 0.01, "retry_after": 2})
    summary, took_s = await timed_run(
        clocked_sim, tmp_path / "a", clock, 300, concurrency=16
    )
    assert summary["refusals"]["other"] + summary["refusals"]["window"] >= 1
    assert summary["learned_limits"]["window"] is None
    assert "requests per" not in caplog.text
    _, tuned_s = await timed_run(clocked_sim, tmp_path / "b", clock, 300, concurrency=3)
    assert tuned_s / took_s >= 0.9


async def test_a_sliding_window_is_learned_from_its_first_refusal(
    clocked_sim: Simulator, tmp_path: Path, clock: FakeClock
) -> None:
    # Answers at once: on the fake clock the run sends as fast as Mira's 3
    # slots let it.
    clocked_sim.faults = MIRA.updated(
        {"window_requests": 40, "window_s": 10, "latency_ms": 0, "latency_sigma": 0}
    )
    summary, took_s = await timed_run(clocked_sim, tmp_path, clock, 300, concurrency=3)
    window = summary["learned_limits"]["window"]
    assert window is not None
    assert window["requests"] <= 40
    assert 10 <= window["seconds"] <= 11
    # The burst that filled it (3 in flight, all at once on the fake clock),
    # and a request or two at its edge.
    assert summary["refusals"]["window"] + summary["refusals"]["gpu_queue"] <= 6
    assert summary["messages_per_answer"] <= 1.02
    # 40 per 10 s: 300 jobs need 7 full windows and a part, and each refusal
    # pauses 10 s (bench/run.py messages times it in real time).
    assert took_s <= 7.5 * 10 + 6 * 10


async def test_slots_its_own_cut_requests_leave_held_cost_little(
    clocked_sim: Simulator, tmp_path: Path, clock: FakeClock
) -> None:
    clocked_sim.faults = MIRA.updated({"p_drop": 0.05, "slot_ttl_s": 20, "seed": 1})
    summary, _ = await timed_run(
        clocked_sim, tmp_path, clock, 150, concurrency=16, slot_expiry_s=20
    )
    assert clocked_sim.stats.account["leaked_slots"] >= 3  # the seed cuts enough
    assert summary["messages_per_answer"] <= 1.10
    assert summary["refusals"]["in_flight"] <= 2
    # No pause past the slots' expiry.
    assert max(clock.sleeps) <= 20 + 1
