"""collect: one row per non-blank input line, in input order, with its outcome."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.batch import Batch
from tests.fakes import FakeClock
from tests.helpers import (
    call_main,
    cli_env,
    collect_file,
    read_jsonl,
    run_settings,
    write_jobs,
)
from worker.app.run import execute_run
from worker.domain.prices import ChargedPrice, PriceBook
from worker.errors import ConfigError
from worker.files.outputs import RunFiles
from worker.sim.faults import SEEDED_PRICES_KOPECKS, Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


# The simulator's pricing route, as the run read it: collect prices rows the same.
SEEDED = PriceBook.build(
    {m: ChargedPrice(*kopecks) for m, kopecks in SEEDED_PRICES_KOPECKS.items()}
)


def job_lines() -> list[Any]:
    lines: list[Any] = []
    for i in range(24):
        meta = {"row": i, "team": f"t{i % 3}"}
        if i % 2:
            lines.append({"id": f"q-{i}", "prompt": f"question {i}", "metadata": meta})
        else:
            lines.append(
                {
                    "id": f"q-{i}",
                    "messages": [{"role": "user", "content": f"question {i}"}],
                    "model": "mira-pro",
                    "metadata": meta,
                }
            )
    lines.insert(5, "{broken")
    lines.insert(9, "")
    lines.append({"id": "refused", "prompt": "x", "x_sim_status": 400})
    return lines


async def run(sim: Simulator, tmp_path: Path, **overrides: Any) -> RunFiles:
    clock = FakeClock()
    files = RunFiles.default(
        str(tmp_path / "jobs.jsonl"),
        results=tmp_path / "jobs.results.jsonl",
        errors=tmp_path / "jobs.errors.jsonl",
        summary=tmp_path / "jobs.summary.json",
    )
    await execute_run(
        run_settings(sim.base_url, **overrides),
        files,
        out=io.StringIO(),
        clock=clock,
        sleep=clock.sleep,
    )
    return files


def collected(tmp_path: Path, files: RunFiles, name: str) -> list[dict[str, Any]]:
    to = tmp_path / name
    collect_file(
        Path(files.input),
        to,
        results=files.results,
        errors=files.errors,
        prices=SEEDED,
    )
    if to.suffix == ".csv":
        with open(to, newline="") as fh:
            return list(csv.DictReader(fh))
    return read_jsonl(to)


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl"])
async def test_one_row_per_line_in_input_order_with_answers_and_metadata(
    sim: Simulator, tmp_path: Path, name: str
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", job_lines())
    files = await run(sim, tmp_path)
    rows = collected(tmp_path, files, name)
    non_blank = [
        n
        for n, line in enumerate(
            (tmp_path / "jobs.jsonl").read_text().splitlines(), start=1
        )
        if line.strip()
    ]
    assert [int(r["line"]) for r in rows] == non_blank
    by_id = {r["custom_id"]: r for r in rows}
    answers = {r["custom_id"]: r for r in read_jsonl(files.results)}
    for job_id, record in answers.items():
        row = by_id[job_id]
        assert row["status"] == "succeeded"
        assert (
            row["content"]
            == (record["response"]["body"]["choices"][0]["message"]["content"])
        )
        assert row["finish_reason"] == "stop"
        assert row["request_id"] == record["response"]["request_id"]
        assert row["request_fingerprint"] == record["request_fingerprint"]
        assert len(record["request_fingerprint"]) == 64
        assert int(row["total_tokens"]) > 0
    assert by_id["refused"]["status"] == "failed"
    assert by_id["refused"]["error_code"] == "http_400"
    broken = next(r for r in rows if int(r["line"]) == 6)
    assert broken["status"] == "invalid"
    assert broken["error_code"] == "invalid_input"
    assert broken["request_fingerprint"] in ("", None)  # no request was made
    if name.endswith(".csv"):
        assert by_id["q-4"]["metadata.team"] == "t1"
        assert by_id["q-4"]["metadata.row"] == "4"
    else:
        assert by_id["q-4"]["metadata"] == {"row": 4, "team": "t1"}
    summary = json.loads(files.summary.read_text())
    cost = sum(float(r["cost_rub"]) for r in rows if r["cost_rub"] not in ("", None))
    assert cost == pytest.approx(summary["cost"]["total"], rel=1e-6)
    assert set(summary["cost"]["by_model"]) == {"mira", "mira-pro"}


async def test_lines_not_run_yet_are_pending(sim: Simulator, tmp_path: Path) -> None:
    sim.faults = Faults(revoke_after=10)
    write_jobs(tmp_path / "jobs.jsonl", job_lines())
    files = await run(sim, tmp_path, concurrency=1)
    rows = collected(tmp_path, files, "out.jsonl")
    statuses = [r["status"] for r in rows]
    assert statuses.count("succeeded") == 10
    assert statuses.count("pending") == len(rows) - 10 - 1  # one invalid line
    assert all(r["content"] is None for r in rows if r["status"] == "pending")


async def test_outputs_of_another_input_are_refused(
    sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", job_lines())
    files = await run(sim, tmp_path)
    write_jobs(tmp_path / "other.jsonl", [{"id": "z", "prompt": "z"}])
    with pytest.raises(ConfigError, match="another input"):
        collect_file(
            tmp_path / "other.jsonl",
            tmp_path / "out.csv",
            results=files.results,
            errors=files.errors,
            prices=PriceBook(),
        )
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open input"):
        collect_file(
            tmp_path / "none.jsonl",
            tmp_path / "out.csv",
            results=tmp_path / "r",
            errors=tmp_path / "e",
            prices=PriceBook(),
        )


async def test_collect_prices_each_record_as_the_run_did_offline(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cache and dedupe, collect's cost is the summary's to the kopeck,
    and it opens no connection: the run kept its prices with its files."""
    sim.faults = Faults(seed=4, p_upstream_error=0.1, p_moderated=0.05)
    questions = [
        {"id": f"warm-{q}", "prompt": f"question {q}", "model": "mira-pro"}
        for q in range(30)
    ]
    write_jobs(tmp_path / "warm" / "jobs.jsonl", questions)
    cache = tmp_path / "answers.sqlite"
    warm = Batch(sim, tmp_path / "warm")
    await warm.run(cache=cache)
    lines = [
        {"id": f"q-{n}", "prompt": f"question {n % 45}", "model": "mira-pro"}
        for n in range(90)  # 30 asked before, and each question twice
    ]
    batch = Batch(sim, tmp_path / "run")
    write_jobs(batch.dir / "jobs.jsonl", lines)
    await batch.run(cache=cache, dedupe=True)
    summary = batch.summary
    assert summary["cache_hits"] > 0
    assert summary["deduplicated"] > 0
    assert summary["cost"]["prices"] == "charged"

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("collect opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    done = call_main(
        "collect",
        "jobs.jsonl",
        "--to",
        "out.jsonl",
        cwd=batch.dir,
        env=cli_env(base_url=sim.base_url),
        monkeypatch=monkeypatch,
    )
    assert done.code == 0, done.stderr
    rows = read_jsonl(batch.dir / "out.jsonl")
    assert sum(r["cost_rub"] or 0 for r in rows) == pytest.approx(
        summary["cost"]["total"], abs=1e-9
    )
    assert "at charged prices" in done.stderr
    cached = [r for r in rows if r["custom_id"] in _cached_ids(batch)]
    assert cached
    assert all(r["cost_rub"] == 0 for r in cached)


def _cached_ids(batch: Batch) -> set[str]:
    return {r["custom_id"] for r in batch.results if r.get("cached")}
