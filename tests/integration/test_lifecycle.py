"""How a run ends, in-process: grace, stop precedence, the idle pipe, a broken display.

The client here is scripted: each request waits until the test answers it, so a
test decides exactly what is in flight when a signal or a 401 arrives. Signals
are real (sent to this process) and reach the run's own handlers.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import SessionlessClient
from tests.helpers import read_jsonl, run_settings, simple_jobs, write_jobs
from worker.app.run import execute_run
from worker.config import Settings
from worker.domain.answer import Answer
from worker.errors import AuthError, PaymentRequiredError, WorkerError
from worker.files.outputs import RunFiles
from worker.report.progress import ProgressReporter
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration

HANG_GUARD_S = 10  # only stops a broken test from hanging; never a timing claim
OK_BODY = {"choices": [{"message": {"content": "ok"}}], "usage": {"total_tokens": 3}}


class ScriptedClient(SessionlessClient):
    """Each request waits until the test answers it."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Answer]] = []
        self.calls = 0

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        self.calls += 1
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.pending.append(answer)
        return await answer

    def answer(self, error: WorkerError | None = None) -> None:
        """Answer the oldest request still waiting."""
        future = self.pending.pop(0)
        if error is None:
            future.set_result(Answer(200, dict(OK_BODY), "req-1"))
        else:
            future.set_exception(error)

    @property
    def in_flight(self) -> int:
        return sum(not f.done() for f in self.pending)


def settings(**overrides: Any) -> Settings:
    return run_settings(
        overrides.pop("base_url", "http://127.0.0.1:9/v1"), concurrency=3, **overrides
    )


def files(tmp_path: Path, source: str = "jobs.jsonl") -> RunFiles:
    return RunFiles(
        input=source if source == "-" else str(tmp_path / source),
        results=tmp_path / "r.jsonl",
        errors=tmp_path / "e.jsonl",
        summary=tmp_path / "s.json",
    )


def summary(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "s.json").read_text())
    return data


async def until(predicate: Any) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not predicate():
            await asyncio.sleep(0.001)


def start(
    tmp_path: Path, client: ScriptedClient, **overrides: Any
) -> asyncio.Task[int]:
    return asyncio.create_task(
        execute_run(
            settings(**overrides),
            files(tmp_path),
            out=io.StringIO(),
            client_factory=lambda s, key: client,
        )
    )


async def finish(run: asyncio.Task[int]) -> int:
    async with asyncio.timeout(HANG_GUARD_S):
        return await run


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (AuthError("Invalid API key", status=401), 3, "auth_failed"),
        (
            PaymentRequiredError("Insufficient balance", status=402),
            4,
            "payment_required",
        ),
    ],
)
async def test_a_fatal_answer_during_the_grace_period_wins_over_the_signal(
    tmp_path: Path, error: WorkerError, code: int, reason: str
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(20))
    client = ScriptedClient()
    run = start(tmp_path, client, shutdown_grace_s=60)
    await until(lambda: client.in_flight == 3)
    client.answer()  # one result lands before the signal
    await until(lambda: client.in_flight == 3)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.01)
    client.answer(error)  # the key dies while the others drain
    await asyncio.sleep(0.01)
    client.answer()  # paid for: within the fatal stop's short grace, kept
    client.answer()
    assert await finish(run) == code
    assert summary(tmp_path)["stop_reason"] == reason
    assert summary(tmp_path)["exit_code"] == code
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 3
    assert read_jsonl(tmp_path / "e.jsonl") == []
    assert client.calls == 4  # nothing started after the signal


async def test_a_fatal_stop_waits_its_short_grace_not_the_long_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.run.pipeline.FATAL_GRACE_S", 0.05)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(20))
    client = ScriptedClient()
    run = start(tmp_path, client, shutdown_grace_s=60)
    await until(lambda: client.in_flight == 3)
    client.answer(AuthError("revoked", status=401))
    # The two left in flight never answer: the 60 s grace is not waited.
    assert await finish(run) == 3
    assert client.calls == 3
    assert summary(tmp_path)["stop_reason"] == "auth_failed"
    assert read_jsonl(tmp_path / "r.jsonl") == []


async def test_grace_over_cancels_what_is_still_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(10))
    client = ScriptedClient()
    run = start(tmp_path, client, shutdown_grace_s=0.05)
    await until(lambda: client.in_flight == 3)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await finish(run) == 143
    assert client.calls == 3  # nothing started after the signal
    assert "cancelling 3 requests in flight" in caplog.text
    assert read_jsonl(tmp_path / "r.jsonl") == []
    assert read_jsonl(tmp_path / "e.jsonl") == []
    assert summary(tmp_path)["not_attempted"] == summary(tmp_path)["total"]


async def test_in_flight_requests_finish_within_the_grace_and_are_kept(
    tmp_path: Path,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(10))
    client = ScriptedClient()
    run = start(tmp_path, client, shutdown_grace_s=60)
    await until(lambda: client.in_flight == 3)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.01)
    for _ in range(3):
        client.answer()
    assert await finish(run) == 130
    assert client.calls == 3
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 3
    assert summary(tmp_path)["stop_reason"] == "interrupted"


async def test_a_second_signal_cancels_without_waiting_the_grace(
    tmp_path: Path,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(10))
    client = ScriptedClient()
    run = start(tmp_path, client, shutdown_grace_s=600)
    await until(lambda: client.in_flight == 3)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
    assert await finish(run) == 130
    assert read_jsonl(tmp_path / "r.jsonl") == []


async def test_sigterm_with_an_idle_pipe_and_nothing_in_flight_ends_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fifo = tmp_path / "jobs.jsonl"
    os.mkfifo(fifo)
    # Held open for writing and never closed: the producer went quiet.
    writer = os.open(fifo, os.O_RDWR)
    try:
        os.write(
            writer, b"".join(json.dumps(j).encode() + b"\n" for j in simple_jobs(2))
        )
        client = ScriptedClient()
        run = start(tmp_path, client, shutdown_grace_s=600)
        await until(lambda: client.in_flight == 2)
        client.answer()
        client.answer()
        await until(lambda: len(read_jsonl(tmp_path / "r.jsonl")) == 2)
        os.kill(os.getpid(), signal.SIGTERM)
        # The 600 s grace is not waited: nothing is in flight.
        assert await finish(run) == 143
    finally:
        os.close(writer)
    assert "grace period" not in caplog.text
    assert summary(tmp_path)["stop_reason"] == "interrupted"
    assert summary(tmp_path)["input_complete"] is False


async def test_a_failing_progress_display_is_logged_and_the_exit_code_stands(
    sim: Simulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ProgressReporter) -> str:
        raise RuntimeError("terminal went away")

    monkeypatch.setattr(ProgressReporter, "status_line", broken)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(30))
    code = await execute_run(
        settings(base_url=sim.base_url, progress="log", progress_interval_s=0.001),
        files(tmp_path),
        out=io.StringIO(),
    )
    assert code == 0
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 30
    failures = [r for r in caplog.records if "progress display failed" in r.message]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING


@pytest.mark.parametrize("answered", [0, 1, 7, 23])
async def test_a_run_stopped_at_any_point_counts_the_whole_input(
    tmp_path: Path, answered: int
) -> None:
    lines: list[Any] = [*simple_jobs(40), "", "{broken", {"id": "job-3", "prompt": "x"}]
    write_jobs(tmp_path / "jobs.jsonl", lines)
    client = ScriptedClient()
    run = start(tmp_path, client, shutdown_grace_s=0.05)
    for _ in range(answered):
        await until(lambda: client.in_flight > 0)
        client.answer()
    await until(lambda: client.in_flight == 3)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await finish(run) == 143
    counts = summary(tmp_path)["counts"]
    assert counts["total"] == 42  # 40 jobs, a broken line, a repeated id
    assert counts["succeeded"] == answered
    assert counts["not_attempted"] == 42 - answered - counts["failed"]
    assert summary(tmp_path)["input_complete"] is True

    # The resume counts what the first run did as done before, and the rest.
    recorded = len(read_jsonl(tmp_path / "r.jsonl") + read_jsonl(tmp_path / "e.jsonl"))
    again = ScriptedClient()
    run = start(tmp_path, again, shutdown_grace_s=0.05)
    await until(lambda: again.in_flight > 0)  # alone: slots were left held
    os.kill(os.getpid(), signal.SIGTERM)
    assert await finish(run) == 143
    counts = summary(tmp_path)["counts"]
    assert counts["total"] == 42
    assert counts["skipped"] == recorded
    assert counts["not_attempted"] == 42 - recorded
