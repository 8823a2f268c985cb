"""Answers as data, against a simulator that answers in kind: valid JSON, fenced
JSON, prose, broken JSON, JSON missing a field, cut answers and tool calls."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.batch import Batch
from tests.helpers import call_main, cli_env, simple_jobs, write_jobs
from worker.domain.prices import PriceBook, charged_prices
from worker.files.outputs import RunFiles
from worker.sim.faults import Faults
from worker.sim.routes import pricing_table
from worker.sim.server import Simulator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "score", "tags"],
    "properties": {
        "title": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "flag": {"type": "boolean"},
    },
    "additionalProperties": False,
}
FAULTY = Faults(
    seed=11,
    p_prose=0.08,
    p_fenced=0.1,
    p_broken_json=0.08,
    p_missing_field=0.08,
    p_length=0.05,
)


def schema_file(directory: Path, schema: object = SCHEMA) -> Path:
    path = directory / "answer.schema.json"
    path.write_text(json.dumps(schema))
    return path


def sent_bodies(sim: Simulator) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in sim.times_seen()]


async def test_a_schema_run_writes_parsed_answers_asks_again_and_counts_it_all(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = FAULTY
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(200))
    # The prices Mira charges, known from the start: each record has its cost.
    charged = PriceBook.build(charged_prices(pricing_table()), ())
    code = await batch.run(json_schema=schema_file(tmp_path), prices=charged)
    assert code in (0, 1)
    results, errors = batch.results, batch.errors
    assert len(results) + len(errors) == 200
    forms = sim.stats.forms
    assert min(forms["fenced"], forms["prose"], forms["missing"]) > 0
    for record in results:
        content = record["response"]["body"]["choices"][0]["message"]["content"]
        if record["parsed_from"] == "json":
            assert record["parsed"] == json.loads(content)  # what the server sent
        else:
            fenced = content.split("```json\n")[1].split("\n```")[0]
            assert record["parsed_from"] == "fenced"
            assert record["parsed"] == json.loads(fenced)
        assert set(SCHEMA["required"]) <= set(record["parsed"])
    reasked = [r for r in results if r.get("reasks")]
    assert reasked  # an invalid first answer, a valid re-ask: a result
    summary = batch.summary
    # What the run counted is what the server saw.
    assert summary["reasks"] == sim.stats.reasks > 0
    assert summary["truncated"] == forms["length"] > 0
    assert summary["invalid_output"] == sum(
        e["error"]["code"] == "invalid_output" for e in errors
    )
    # Re-asks are paid for: tokens and cost count every request.
    answers = sum(v for k, v in summary["requests"]["by_status"].items() if k == "200")
    assert answers == summary["requests"]["sent"] == sim.stats.requests
    assert summary["cost"]["total"] == pytest.approx(
        sum(r["cost_rub"] for r in results + errors)
    )


async def test_an_answer_invalid_every_time_fails_after_the_last_reask(
    sim: Simulator, tmp_path: Path
) -> None:
    batch = Batch(sim, tmp_path)
    lines: list[dict[str, Any]] = [
        {"id": "good", "prompt": "a"},
        {"id": "late", "prompt": "b", "x_sim_forms": ["prose", "missing", "valid"]},
        {"id": "never", "prompt": "c", "x_sim_forms": ["missing"]},
        {"id": "broken", "prompt": "d", "x_sim_forms": ["broken"]},
    ]
    write_jobs(batch.dir / "jobs.jsonl", lines)
    assert await batch.run(json_schema=schema_file(tmp_path), max_reasks=2) == 1
    results = {r["custom_id"]: r for r in batch.results}
    assert "reasks" not in results["good"]
    assert results["late"]["reasks"] == 2
    assert results["late"]["attempts"] == 3  # every request of the job
    errors = {e["custom_id"]: e for e in batch.errors}
    never = errors["never"]
    assert never["error"]["code"] == "invalid_output"
    assert never["reasks"] == 2
    details = never["error"]["details"]
    assert details[0]["path"] == "$"
    assert "title" in details[0]["message"]
    kept = never["response"]["body"]["choices"][0]["message"]["content"]
    assert "title" not in json.loads(kept)  # the last answer, kept
    assert "not valid JSON" in errors["broken"]["error"]["message"]
    # The conversation went on: the answer, then what was wrong with it.
    reasks = [b for b in sent_bodies(sim) if len(b["messages"]) > 1]
    assert len(reasks) == 2 + 2 + 2
    last = max(reasks, key=lambda b: len(b["messages"]))
    assert [m["role"] for m in last["messages"]][-2:] == ["assistant", "user"]
    assert "$" in last["messages"][-1]["content"]
    assert batch.summary["reasks"] == 6
    assert batch.summary["invalid_output"] == 2


async def test_a_lines_own_response_format_applies_to_that_line_only(
    sim: Simulator, tmp_path: Path
) -> None:
    own = {
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "schema": {
                "type": "object",
                "required": ["city"],
                "properties": {"city": {"type": "string"}},
            },
        },
    }
    lines: list[dict[str, Any]] = [
        {"id": "plain", "prompt": "hello"},
        {"id": "typed", "prompt": "where?", "response_format": own},
        {"id": "object", "prompt": "any", "response_format": {"type": "json_object"}},
    ]
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", lines)
    assert await batch.run() == 0
    results = {r["custom_id"]: r for r in batch.results}
    assert "parsed" not in results["plain"]
    assert results["typed"]["parsed"] == {"city": "value"}
    assert isinstance(results["object"]["parsed"], dict)
    bodies = {b["messages"][0]["content"].split("\n")[0]: b for b in sent_bodies(sim)}
    assert "response_format" not in bodies["hello"]
    assert bodies["where?"]["response_format"] == own


async def test_the_instruction_reaches_the_server_and_the_fingerprint_covers_it(
    sim: Simulator, tmp_path: Path
) -> None:
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(3))
    await batch.run(json_schema=schema_file(tmp_path))
    for raw in sim.times_seen():
        body = orjson.loads(raw)
        last = body["messages"][-1]
        assert last["role"] == "user"
        assert "JSON Schema" in last["content"]
        assert json.dumps(SCHEMA, separators=(",", ":")) in last["content"]
        assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    fingerprints = {r["request_fingerprint"] for r in batch.results}
    sent = {
        hashlib.sha256(
            orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        for raw in sim.times_seen()
    }
    assert fingerprints == sent  # the request as sent, instruction and all


@pytest.mark.parametrize(("mode", "code"), [("retry", 1), ("keep", 0), ("fail", 1)])
async def test_a_cut_answer_never_ends_as_a_plain_result(
    sim: Simulator, tmp_path: Path, mode: str, code: int
) -> None:
    lines: list[dict[str, Any]] = [
        {"id": "cut-once", "prompt": "a", "x_sim_forms": ["length", "valid"]},
        {
            "id": "cut-always",
            "prompt": "b",
            "max_tokens": 100,
            "x_sim_forms": ["length"],
        },
    ]
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", lines)
    assert await batch.run(on_truncated=mode) == code
    results = {r["custom_id"]: r for r in batch.results}
    errors = {e["custom_id"]: e for e in batch.errors}
    widened = sorted(
        b.get("max_tokens", 0) for b in sent_bodies(sim) if b.get("max_tokens")
    )
    if mode == "retry":
        assert "truncated" not in results["cut-once"]  # its second answer whole
        assert errors["cut-always"]["error"]["code"] == "truncated"
        cut = errors["cut-always"]["response"]["body"]["choices"][0]
        assert cut["finish_reason"] == "length"  # the cut answer kept
        assert widened == [100, 200, 8192]  # doubled once (Mira's default: 4096)
    elif mode == "keep":
        assert results["cut-once"]["truncated"] is True
        assert results["cut-always"]["truncated"] is True
        assert sim.stats.requests == 2
    else:
        assert {e["error"]["code"] for e in errors.values()} == {"truncated"}
        assert sim.stats.requests == 2
    assert batch.summary["truncated"] == sim.stats.forms["length"]


async def test_tool_calls_are_answers_and_every_choice_is_checked(
    sim: Simulator, tmp_path: Path
) -> None:
    lines: list[dict[str, Any]] = [
        {"id": "tool", "prompt": "call it", "x_sim_forms": ["tool_calls"]},
        {"id": "two", "prompt": "two of them", "n": 2},
    ]
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", lines)
    assert await batch.run() == 0
    results = {r["custom_id"]: r for r in batch.results}
    message = results["tool"]["response"]["body"]["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"]
    assert len(results["two"]["response"]["body"]["choices"]) == 2

    sim.faults = Faults(seed=3, p_missing_field=0.5)
    again = Batch(sim, tmp_path / "n2")
    write_jobs(
        again.dir / "jobs.jsonl",
        [{"id": f"n-{i}", "prompt": f"p {i}", "n": 2} for i in range(12)],
    )
    await again.run(json_schema=schema_file(tmp_path))
    for record in again.results:
        assert isinstance(record["parsed"], list)
        assert len(record["parsed"]) == 2
        assert all(set(SCHEMA["required"]) <= set(v) for v in record["parsed"])
    assert again.summary["reasks"] == sim.stats.reasks > 0


def test_an_invalid_schema_file_exits_2_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(2))
    schema_file(tmp_path, {"type": "objekt"})
    done = call_main(
        "run",
        "jobs.jsonl",
        "--json-schema",
        "answer.schema.json",
        cwd=tmp_path,
        env=cli_env(base_url="http://127.0.0.1:9/v1"),
        monkeypatch=monkeypatch,
    )
    assert done.code == 2
    assert "not a valid JSON Schema (Draft 2020-12)" in done.stderr
    assert not (tmp_path / "jobs.results.jsonl").exists()


async def test_a_bad_response_format_is_an_invalid_line_named_by_number(
    sim: Simulator, tmp_path: Path
) -> None:
    lines: list[dict[str, Any]] = [
        {"id": "ok", "prompt": "a"},
        {"id": "bad", "prompt": "b", "response_format": {"type": "yaml"}},
        {
            "id": "worse",
            "prompt": "c",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x"}},
        },
    ]
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", lines)
    assert await batch.run() == 1
    errors = {e["line"]: e for e in batch.errors}
    assert errors[2]["error"]["code"] == "invalid_input"
    assert "response_format" in errors[2]["error"]["message"]
    assert errors[3]["error"]["code"] == "invalid_input"
    assert sim.stats.requests == 1


async def test_the_report_shows_outcomes_by_cause_and_the_failing_answers(
    sim: Simulator, tmp_path: Path
) -> None:
    lines: list[dict[str, Any]] = [
        {"id": "good", "prompt": "a"},
        {"id": "late", "prompt": "b", "x_sim_forms": ["prose", "valid"]},
        {"id": "never", "prompt": "c", "x_sim_forms": ["missing"]},
    ]
    batch = Batch(sim, tmp_path)
    batch.files = RunFiles.default(str(tmp_path / "jobs.jsonl"), directory=tmp_path)
    write_jobs(tmp_path / "jobs.jsonl", lines)
    await batch.run(json_schema=schema_file(tmp_path), max_reasks=1)
    page = (tmp_path / "jobs.report.html").read_text()
    assert "Answers as data" in page
    assert "usable JSON after re-asks" in page
    assert "usable JSON at once" in page
    assert "never became usable JSON" in page
    assert "&quot;title&quot; is a required property" in page


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
async def test_collect_makes_one_column_per_top_level_property(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    batch = Batch(sim, tmp_path)
    write_jobs(batch.dir / "jobs.jsonl", simple_jobs(12))
    schema_file(tmp_path)
    await batch.run(json_schema=tmp_path / "answer.schema.json")
    done = call_main(
        "collect",
        "jobs.jsonl",
        "--format",
        kind,
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert done.code == 0, done.stderr
    out = tmp_path / f"jobs.collected.{kind}"
    parsed = {r["custom_id"]: r["parsed"] for r in batch.results}
    if kind == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["custom_id"] for r in rows] == [f"job-{i}" for i in range(12)]
        assert all(r["parsed"] == parsed[r["custom_id"]] for r in rows)
        return
    if kind == "csv":
        import csv

        with open(out, newline="") as fh:
            rows = list(csv.DictReader(fh))
        header = list(rows[0])
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        rows = table.to_pylist()
        header = table.column_names
        types = {f.name: str(f.type) for f in table.schema}
        assert types["parsed.title"] == "string"
        assert types["parsed.score"] == "double"
        assert types["parsed.flag"] == "bool"
        assert types["parsed.tags"] == "string"  # nested: JSON text
    columns = [c for c in header if c.startswith("parsed.")]
    assert columns == [f"parsed.{name}" for name in SCHEMA["properties"]]
    assert [r["custom_id"] for r in rows] == [f"job-{i}" for i in range(12)]
    for row in rows:
        value = parsed[row["custom_id"]]
        assert row["parsed.title"] == value["title"]
        assert json.loads(row["parsed.tags"]) == value["tags"]
