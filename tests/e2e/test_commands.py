"""validate, demo, simulate and --help: the real command as a process where the
process is the point (simulate's signals), else through main()."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import (
    call_main,
    cli_env,
    read_jsonl,
    run_cli,
    start_cli,
    write_jobs,
)
from worker.app.demo import example_jobs, run_demo

pytestmark = pytest.mark.e2e


def test_validate_reports_counts_models_tokens_and_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = call_main(
        "validate",
        str(example_jobs()),
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert result.code == 0, result.stderr
    assert "51 jobs, 51 valid, 0 invalid" in result.stdout
    assert "schemas: 1 jobs must answer as JSON" in result.stdout
    assert "model mira-pro:" in result.stdout
    assert "input tokens" in result.stdout
    assert re.search(r"estimated cost: about [\d,.]+ RUB", result.stdout)


def test_validate_names_every_bad_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jobs(
        tmp_path / "bad.jsonl",
        [{"id": "a", "prompt": "x"}, "{oops", {"id": "a", "prompt": "y"}, {"id": "b"}],
    )
    result = call_main(
        "validate",
        "bad.jsonl",
        "--price",
        "mira=1,2",
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert result.code == 1
    for line_no in (2, 3, 4):
        assert f"line {line_no}:" in result.stdout
    assert "line 1:" not in result.stdout
    assert "4 jobs, 1 valid, 3 invalid" in result.stdout


def test_validate_sends_nothing_and_needs_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jobs(tmp_path / "ok.jsonl", [{"prompt": "x"}])
    result = call_main(
        "validate",
        "ok.jsonl",
        cwd=tmp_path,
        env=cli_env(key=None, base_url="http://127.0.0.1:9/v1"),
        monkeypatch=monkeypatch,
    )
    assert result.code == 0


def test_validate_of_a_missing_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = call_main(
        "validate", "nope.jsonl", cwd=tmp_path, env=cli_env(), monkeypatch=monkeypatch
    )
    assert result.code == 2
    assert "cannot open input" in result.stderr


@pytest.mark.slow
async def test_demo_in_an_empty_directory(tmp_path: Path) -> None:
    # Through main(): its files and exit code are the point here; the real
    # command runs the demo as a process in tests/e2e/test_tmux.py.
    result = await run_cli(
        "demo", cwd=tmp_path, env=cli_env(key=None), timeout_s=60, in_process=True
    )
    assert result.code == 0, result.stderr
    results = read_jsonl(tmp_path / "demo-output" / "example.results.jsonl")
    valid = [line for line in example_jobs().read_text().splitlines() if line.strip()]
    assert len(results) == len(valid) == 51
    (extract,) = [r for r in results if r["custom_id"] == "extract-051"]
    assert set(extract["parsed"]) == {"city", "year"}  # answered in kind
    assert read_jsonl(tmp_path / "demo-output" / "example.errors.jsonl") == []
    assert "retries" in result.stderr
    summary = json.loads(
        (tmp_path / "demo-output" / "example.summary.json").read_text()
    )
    assert summary["retries"]["total"] > 0
    # A second demo over the first one's files starts over.
    assert await asyncio.to_thread(run_demo, tmp_path / "demo-output") == 0
    assert len(read_jsonl(tmp_path / "demo-output" / "example.results.jsonl")) == 51


def test_help_lists_every_option_with_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = call_main(
        "run", "--help", cwd=tmp_path, env=cli_env(), monkeypatch=monkeypatch
    )
    assert result.code == 0
    text = " ".join(result.stdout.split())
    for flag in (
        "--base-url",
        "--model",
        "--concurrency",
        "--max-attempts",
        "--timeout",
        "--rpm",
        "--tpm",
        "--max-retry-after",
        "--deadline",
        "--token-budget",
        "--output",
        "--errors",
        "--summary",
        "--max-consecutive-failures",
        "--shutdown-grace",
        "--retry-failed",
        "--fresh",
        "--force",
        "--shard",
        "--allow-insecure-http",
        "--log-level",
        "--log-format",
        "--progress",
        "--progress-interval",
    ):
        assert flag in text, flag
    assert text.count("(default:") >= 20
    assert "exit codes" in text


@pytest.mark.slow
async def test_simulate_serves_until_sigterm(tmp_path: Path) -> None:
    proc = await start_cli(
        "simulate", "--port", "0", "--p500", "0", cwd=tmp_path, env=cli_env()
    )
    assert proc.stdout is not None
    key_line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    url_line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    key = key_line.split()[-1]
    base_url = re.search(r"http://\S+/v1", url_line)
    assert base_url is not None
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url.group(0)}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        assert response.status == 200
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
