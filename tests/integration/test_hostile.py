"""A hostile world, in-process: a full disk, answers that cannot be recorded."""

from __future__ import annotations

import errno
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeClock, SessionlessClient
from tests.helpers import (
    read_jsonl,
    run_settings,
    simple_jobs,
    write_jobs,
)
from worker.api.client import ChatClient
from worker.app.run import execute_run
from worker.domain.answer import Answer
from worker.files.outputs import RunFiles
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


class CountingClient(ChatClient):
    """A real client that counts the requests it starts."""

    sent = 0

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        CountingClient.sent += 1
        return await super().complete(payload, stream=stream)


def run(sim: Simulator, tmp_path: Path, **overrides: Any) -> Any:
    clock = FakeClock()
    return execute_run(
        run_settings(sim.base_url, concurrency=8, **overrides),
        RunFiles(
            input=str(tmp_path / "jobs.jsonl"),
            results=tmp_path / "r.jsonl",
            errors=tmp_path / "e.jsonl",
            summary=tmp_path / "s.json",
        ),
        out=io.StringIO(),
        clock=clock,
        sleep=clock.sleep,
        client_factory=lambda s, key: CountingClient(
            s.base_url, key, timeout_s=10, max_connections=s.concurrency
        ),
    )


def whole_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_bytes().split(b"\n"):
        try:
            ids.append(json.loads(line)["custom_id"])
        except ValueError:
            continue  # the torn last line a full disk leaves
    return ids


async def test_a_full_disk_stops_before_another_request_and_resume_is_exact(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.faults = Faults(latency_ms=5, latency_jitter_ms=10)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(300))
    real_write = os.write
    lines_written = 0
    sent_at_failure: list[int] = []

    def filling(fd: int, data: bytes | memoryview) -> int:
        nonlocal lines_written
        lines_written += 1
        if lines_written < 40:
            return real_write(fd, data)
        if not sent_at_failure:
            sent_at_failure.append(CountingClient.sent)
            return real_write(fd, bytes(data[: len(data) // 2]))  # torn
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("worker.files.writer.os.write", filling)
    CountingClient.sent = 0
    assert await run(sim, tmp_path) == 7
    assert CountingClient.sent == sent_at_failure[0]  # nothing sent after
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["stop_reason"] == "output_failed"
    assert summary["exit_code"] == 7
    assert "No space left on device" in summary["message"]
    assert "Traceback" not in caplog.text
    kept = whole_ids(tmp_path / "r.jsonl")
    assert len(kept) == 39

    monkeypatch.setattr("worker.files.writer.os.write", real_write)
    assert await run(sim, tmp_path) == 0
    ids = whole_ids(tmp_path / "r.jsonl") + whole_ids(tmp_path / "e.jsonl")
    assert Counter(ids) == Counter(f"job-{i}" for i in range(300))


async def test_the_summary_that_cannot_be_written_is_said_and_exits_7(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(5))

    def no_room(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("worker.app.run.atomic_write", no_room)
    assert await run(sim, tmp_path) == 7
    assert "could not write the summary" in caplog.text
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 5


async def test_an_answer_too_deep_to_record_fails_its_job_once(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep: Any = "bottom"
    for _ in range(300):
        deep = {"d": deep}
    original = ChatClient.complete

    async def deep_answer(
        self: ChatClient, payload: bytes, *, stream: bool = False
    ) -> Answer:
        reply = await original(self, payload, stream=stream)
        if b"deep" in payload:
            reply.body["nested"] = deep
        return reply

    monkeypatch.setattr(ChatClient, "complete", deep_answer)
    write_jobs(
        tmp_path / "jobs.jsonl", [*simple_jobs(5), {"id": "deep", "prompt": "deep"}]
    )
    assert await run(sim, tmp_path) == 1
    (error,) = read_jsonl(tmp_path / "e.jsonl")
    assert error["custom_id"] == "deep"
    assert error["error"]["code"] == "unrecordable_response"
    assert error["attempts"] == 1
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 5


class LyingTotalClient(SessionlessClient):
    """Answers with valid prompt and completion counts and a negative total."""

    sent = 0

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        LyingTotalClient.sent += 1
        body: dict[str, object] = {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": -100},
        }
        return Answer(200, body, None)


async def test_a_lying_total_cannot_lift_the_token_budget(tmp_path: Path) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(20))
    clock = FakeClock()
    code = await execute_run(
        run_settings("http://127.0.0.1:9/v1", concurrency=1, token_budget=5),
        RunFiles.default(str(tmp_path / "jobs.jsonl"), directory=tmp_path),
        out=io.StringIO(),
        clock=clock,
        sleep=clock.sleep,
        client_factory=lambda s, key: LyingTotalClient(),
    )
    assert code == 5
    assert LyingTotalClient.sent == 1  # 5 tokens counted: the budget is spent
    summary = json.loads((tmp_path / "jobs.summary.json").read_text())
    assert summary["stop_reason"] == "token_budget"
    assert summary["tokens"]["total"] == 5
