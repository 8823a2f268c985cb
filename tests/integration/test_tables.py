"""Tables in, through a prompt template: CSV (quoted commas and newlines, a BOM,
non-ASCII), TSV, Parquet and JSONL records; the same rows with their answers out."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.batch import Batch
from tests.helpers import call_main, cli_env, run_cli, write_jobs
from worker.files.outputs import RunFiles
from worker.sim.server import Simulator

TEMPLATE = "Translate into {{ language }}: {{ text }}"


def rows(n: int) -> list[dict[str, Any]]:
    """n rows whose text holds what CSV must quote: commas, quotes, newlines,
    and non-ASCII."""
    texts = [
        "plain words",
        "a comma, inside",
        'a "quoted" word',
        "two\nlines",
        "Привет, мир — ça va?",
    ]
    return [
        {
            "id": f"r{i:04d}",
            "language": ("French", "German")[i % 2],
            "text": f"{texts[i % 5]} #{i}",
        }
        for i in range(n)
    ]


def write_csv(path: Path, table: list[dict[str, Any]], *, bom: bool = True) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(table[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(table)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode())
    return path


def write_parquet(path: Path, table: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(table), path, row_group_size=128)
    return path


def batch_for(sim: Simulator, directory: Path, name: str) -> Batch:
    batch = Batch(sim, directory)
    batch.files = RunFiles.default(str(directory / name), directory=directory)
    return batch


def prompts_sent(sim: Simulator) -> list[str]:
    return [orjson.loads(raw)["messages"][-1]["content"] for raw in sim.times_seen()]


@pytest.mark.slow
async def test_a_thousand_csv_rows_run_once_each_and_come_back_in_order(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = rows(1000)
    write_csv(tmp_path / "data.csv", table)
    (tmp_path / "t.j2").write_text(TEMPLATE)
    batch = batch_for(sim, tmp_path, "data.csv")
    assert (
        await batch.run(template=tmp_path / "t.j2", id_column="id", concurrency=16) == 0
    )
    expected = sorted(f"Translate into {r['language']}: {r['text']}" for r in table)
    assert sorted(prompts_sent(sim)) == expected  # every row once, as rendered
    assert sim.stats.requests == 1000
    done = call_main(
        "collect",
        "data.csv",
        "-f",
        "csv",
        "--template",
        "t.j2",
        "--id-column",
        "id",
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert done.code == 0, done.stderr
    with open(tmp_path / "data.collected.csv", newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert len(back) == 1000
    header = list(back[0])
    assert header[:3] == ["id", "language", "text"]  # the input's own columns first
    assert header[3:6] == ["line", "custom_id", "status"]
    for row, given in zip(back, table, strict=True):
        assert (row["id"], row["language"], row["text"]) == (
            given["id"],
            given["language"],
            given["text"],
        )
        assert row["status"] == "succeeded"
        assert row["content"].endswith(given["text"])  # the simulator echoes it


async def test_parquet_and_jsonl_records_send_the_same_requests(
    sim: Simulator, tmp_path: Path
) -> None:
    table = rows(60)
    (tmp_path / "t.j2").write_text(TEMPLATE)
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq").mkdir()
    write_csv(tmp_path / "csv" / "data.csv", table)
    write_parquet(tmp_path / "pq" / "data.parquet", table)
    write_jobs(tmp_path / "jl" / "data.jsonl", table)
    fingerprints = {}
    for folder, name in (
        ("csv", "data.csv"),
        ("pq", "data.parquet"),
        ("jl", "data.jsonl"),
    ):
        batch = batch_for(sim, tmp_path / folder, name)
        assert await batch.run(template=tmp_path / "t.j2") == 0
        fingerprints[folder] = {
            r["custom_id"]: r["request_fingerprint"] for r in batch.results
        }
    assert fingerprints["csv"] == fingerprints["pq"] == fingerprints["jl"]
    assert sorted(fingerprints["csv"]) == sorted(f"row-{n}" for n in range(1, 61))


async def test_an_empty_variable_fails_its_row_and_the_others_run(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = rows(8)
    table[4]["text"] = ""
    write_csv(tmp_path / "data.csv", table)
    (tmp_path / "t.j2").write_text(TEMPLATE)
    batch = batch_for(sim, tmp_path, "data.csv")
    assert await batch.run(template=tmp_path / "t.j2") == 1
    (error,) = batch.errors
    assert error["line"] == 5
    assert error["custom_id"] == "row-5"
    assert error["error"]["code"] == "invalid_input"
    assert error["error"]["message"] == "the variable 'text' is empty"
    assert "row 5 is not a valid job" in caplog.text
    assert len(batch.results) == 7
    assert "row number" in caplog.text  # ids are row numbers: said once


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("Hello {{ city }}", "uses 'city', which the header of"),
        ("{{ ''.__class__ }}", "reaches for __class__"),
        ("{{ text.__class__.__mro__ }}", "reaches for __"),
        ("{{ lipsum(1) }} {{ text }}", "uses 'lipsum', which the header"),
        ("{{ cycler(1) }} {{ config }}", "uses 'config', 'cycler'"),
        ("{{ text|attr('__class__') }}", "attr filter"),
        ("line one\n{{ text ", "syntax error on line 2"),
    ],
)
def test_a_template_that_cannot_run_exits_2_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str, said: str
) -> None:
    write_csv(tmp_path / "data.csv", rows(3))
    (tmp_path / "t.j2").write_text(template)
    done = call_main(
        "run",
        "data.csv",
        "--template",
        "t.j2",
        cwd=tmp_path,
        env=cli_env(base_url="http://127.0.0.1:9/v1"),
        monkeypatch=monkeypatch,
    )
    assert done.code == 2
    assert said in done.stderr
    assert not (tmp_path / "data.results.jsonl").exists()


async def test_a_template_reaches_nothing_but_the_row(
    sim: Simulator, tmp_path: Path
) -> None:
    write_csv(tmp_path / "data.csv", rows(2))
    (tmp_path / "t.j2").write_text(
        "{{ text }} {{ range(2)|list }} {{ row['language'] }} {{ text|upper }}"
    )
    batch = batch_for(sim, tmp_path, "data.csv")
    assert await batch.run(template=tmp_path / "t.j2") == 0
    assert sorted(prompts_sent(sim)) == [
        "a comma, inside #1 [0, 1] German A COMMA, INSIDE #1",
        "plain words #0 [0, 1] French PLAIN WORDS #0",
    ]


async def test_one_edited_cell_sends_exactly_that_row_again(
    sim: Simulator, tmp_path: Path
) -> None:
    table = rows(20)
    write_csv(tmp_path / "data.csv", table)
    (tmp_path / "t.j2").write_text(TEMPLATE)
    batch = batch_for(sim, tmp_path, "data.csv")
    assert await batch.run(template=tmp_path / "t.j2", id_column="id") == 0
    before = sim.stats.requests
    table[7]["text"] = "an edited cell"
    write_csv(tmp_path / "data.csv", table)
    assert (
        await batch.run(template=tmp_path / "t.j2", id_column="id", redo_changed=True)
        == 0
    )
    assert sim.stats.requests == before + 1
    assert prompts_sent(sim)[-1].endswith("an edited cell")
    current = {r["custom_id"]: r for r in batch.results}
    assert len(current) == 20
    assert current["r0007"]["response"]["body"]["choices"][0]["message"][
        "content"
    ].endswith("an edited cell")


async def test_tsv_and_csv_from_standard_input(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text(TEMPLATE)
    tsv = 'language\ttext\nFrench\thello\nGerman\t"tab\tinside"\n'
    (tmp_path / "data.tsv").write_text(tsv)
    batch = batch_for(sim, tmp_path, "data.tsv")
    assert await batch.run(template=tmp_path / "t.j2") == 0
    assert sorted(prompts_sent(sim)) == [
        "Translate into French: hello",
        "Translate into German: tab\tinside",
    ]


async def test_a_50_mb_line_is_read_fast_and_never_sent(
    sim: Simulator, tmp_path: Path
) -> None:
    lines: list[Any] = [
        {"id": "before", "prompt": "a"},
        # The line as json.dumps writes it, without its 0.3 s pass over 50 MB.
        b'{"id": "huge", "prompt": "' + b"x" * 50_000_000 + b'"}',
        {"id": "long", "prompt": "y" * 32_001},
        {"id": "after", "prompt": "b"},
    ]
    write_jobs(tmp_path / "jobs.jsonl", lines)
    batch = Batch(sim, tmp_path)
    started = time.monotonic()
    assert await batch.run() == 1
    assert time.monotonic() - started < 10  # a guard, not a timing claim (bench/)
    errors = {e["line"]: e for e in batch.errors}
    assert "2 MiB" in errors[2]["error"]["message"]
    assert "32,001 characters" in errors[3]["error"]["message"]
    assert sorted(r["custom_id"] for r in batch.results) == ["after", "before"]
    assert sim.stats.requests == 2


async def test_a_file_starting_with_a_bom_runs_every_line(
    sim: Simulator, tmp_path: Path
) -> None:
    path = write_jobs(
        tmp_path / "jobs.jsonl", [{"id": f"j{i}", "prompt": "p"} for i in range(3)]
    )
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    batch = Batch(sim, tmp_path)
    assert await batch.run() == 0
    assert len(batch.results) == 3


async def test_a_key_in_a_prompt_is_never_sent_nor_printed(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leaked = "sk-mira-" + "0123456789abcdef" * 2 + "01234567"
    write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"id": "ok", "prompt": "fine"},
            {"id": "oops", "prompt": f"my key is {leaked}"},
        ],
    )
    batch = Batch(sim, tmp_path)
    assert await batch.run() == 1
    (error,) = batch.errors
    assert error["error"]["code"] == "key_in_prompt"
    assert error["line"] == 2
    assert sim.stats.requests == 1
    assert leaked not in caplog.text
    for path in tmp_path.glob("jobs.*"):
        if path.name != "jobs.jsonl":  # the input holds it, of course
            assert leaked.encode() not in path.read_bytes()
    checked = await run_cli(
        "validate", "jobs.jsonl", cwd=tmp_path, env=cli_env(), in_process=True
    )
    assert checked.code == 1
    assert "line 2:" in checked.stdout
    assert "1 lines carry a string shaped like a Mira API key" in checked.stdout
    assert leaked not in checked.stdout + checked.stderr


def test_validate_shows_the_rendered_prompts_counts_and_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = rows(6)
    table[2]["language"] = ""
    write_csv(tmp_path / "data.csv", table)
    (tmp_path / "t.j2").write_text(TEMPLATE)
    done = call_main(
        "validate",
        "data.csv",
        "--template",
        "t.j2",
        "--show",
        "2",
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert done.code == 1
    out = done.stdout
    assert "data.csv: 6 jobs, 5 valid, 1 invalid" in out
    assert "the prompt of row 1:\n    | Translate into French: plain words #0" in out
    assert "the prompt of row 2:" in out
    assert "the prompt of row 4:" not in out
    assert "row 3: the variable 'language' is empty" in out
    assert "row number" in out  # ids are row numbers: said once
    assert "estimated cost: about" in out


async def test_the_example_table_runs_as_the_readme_says(
    sim: Simulator, tmp_path: Path
) -> None:
    jobs = Path(__file__).resolve().parents[2] / "jobs"
    flags = ("--template", str(jobs / "example.j2"), "--id-column", "id")
    schema = ("--json-schema", str(jobs / "example.schema.json"))
    shown = await run_cli(
        "validate",
        str(jobs / "example.csv"),
        *flags,
        *schema,
        cwd=tmp_path,
        env=cli_env(),
        in_process=True,
    )
    assert shown.code == 0, shown.stderr
    assert "8 jobs, 8 valid, 0 invalid" in shown.stdout
    assert "Review: Boils fast and quietly." in shown.stdout
    batch = batch_for(sim, tmp_path, "example.csv")
    batch.files = RunFiles.default(str(jobs / "example.csv"), directory=tmp_path)
    code = await batch.run(
        template=jobs / "example.j2",
        id_column="id",
        json_schema=jobs / "example.schema.json",
    )
    assert code == 0
    sentiments = {r["parsed"]["sentiment"] for r in batch.results}
    assert sentiments <= {"positive", "negative", "neutral"}
