"""Resume keyed by what was asked: edited jobs are noticed, and --redo-changed
sends exactly those again, keeping one current record per id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.batch import Batch
from tests.helpers import collect_file, read_jsonl, simple_jobs, write_jobs
from worker.domain.prices import PriceBook
from worker.sim.server import Simulator


def edited(jobs: list[dict[str, Any]], which: range) -> list[dict[str, Any]]:
    return [
        {**job, "prompt": job["prompt"] + " (edited)"} if i in which else job
        for i, job in enumerate(jobs)
    ]


async def test_edited_jobs_are_reported_then_redone_with_one_record_per_id(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = simple_jobs(20)
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    batch = Batch(sim, tmp_path)
    assert await batch.run() == 0
    write_jobs(tmp_path / "jobs.jsonl", edited(jobs, range(3, 8)))

    sent = sim.stats.requests
    assert await batch.run() == 0
    assert sim.stats.requests == sent  # reported, not silently taken as current
    assert (
        "5 jobs changed since they were answered (lines 4, 5, 6, 7, 8)" in caplog.text
    )
    assert "--redo-changed sends them again" in caplog.text

    assert await batch.run(redo_changed=True) == 0
    assert sim.stats.requests == sent + 5  # exactly those 5
    results = batch.results
    assert sorted(r["custom_id"] for r in results) == sorted(j["id"] for j in jobs)
    for record in results:
        content = record["response"]["body"]["choices"][0]["message"]["content"]
        n = int(record["custom_id"].split("-")[1])
        assert content.endswith("(edited)") is (3 <= n < 8)
    replaced = read_jsonl(tmp_path / "jobs.replaced.jsonl")
    assert sorted(r["custom_id"] for r in replaced) == [f"job-{n}" for n in range(3, 8)]

    report = collect_file(
        tmp_path / "jobs.jsonl",
        tmp_path / "table.jsonl",
        results=batch.files.results,
        errors=batch.files.errors,
        prices=PriceBook(per_million={}),
    )
    assert report.rows == 20
    rows = read_jsonl(tmp_path / "table.jsonl")
    assert all(r["content"].endswith("(edited)") for r in rows if r["line"] in (4, 8))

    assert await batch.run() == 0  # nothing changed any more
    assert sim.stats.requests == sent + 5


async def test_records_without_fingerprints_resume_as_before(
    sim: Simulator, tmp_path: Path
) -> None:
    jobs = simple_jobs(5)
    write_jobs(tmp_path / "jobs.jsonl", jobs)
    batch = Batch(sim, tmp_path)
    assert await batch.run() == 0
    old = [
        {k: v for k, v in r.items() if k != "request_fingerprint"}
        for r in batch.results
    ]
    batch.files.results.write_text("".join(json.dumps(r) + "\n" for r in old))
    write_jobs(tmp_path / "jobs.jsonl", edited(jobs, range(5)))
    sent = sim.stats.requests
    assert await batch.run(redo_changed=True) == 0
    assert sim.stats.requests == sent  # unchanged as far as anyone can tell
    assert batch.summary["skipped"] == 5
