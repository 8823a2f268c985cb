"""The pipeline in-process against the simulator, on an injected clock."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.fakes import FakeClock
from tests.helpers import read_jsonl, run_settings, simple_jobs, write_jobs
from worker.api.client import ChatClient
from worker.api.keys import KeyRing
from worker.app.run import execute_run
from worker.config import Settings
from worker.domain.answer import Answer
from worker.errors import RateLimitedError
from worker.files.outputs import RunFiles
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.integration


def settings_for(sim: Simulator, **overrides: object) -> Settings:
    values: dict[str, object] = {"concurrency": 4, "max_attempts": 10, **overrides}
    return run_settings(sim.base_url, **values)


def files_in(tmp_path: Path) -> RunFiles:
    return RunFiles(
        input=str(tmp_path / "jobs.jsonl"),
        results=tmp_path / "r.jsonl",
        errors=tmp_path / "e.jsonl",
        summary=tmp_path / "s.json",
    )


class RecordingClient(ChatClient):
    """A real ChatClient noting, on the fake clock, its sends and its 429s."""

    def __init__(self, settings: Settings, key: KeyRing, clock: FakeClock) -> None:
        super().__init__(
            settings.base_url, key, timeout_s=10, max_connections=settings.concurrency
        )
        self.clock = clock
        self.sent: list[float] = []
        self.pauses: list[tuple[float, float]] = []

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        self.sent.append(self.clock())
        try:
            return await super().complete(payload)
        except RateLimitedError as exc:
            now = self.clock()
            self.pauses.append((now, now + exc.retry_after_s))
            raise


async def test_retry_after_pauses_every_worker_on_the_injected_clock(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(seed=8, p429=0.08, retry_after=30)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(60))
    clock = FakeClock()
    clients: list[RecordingClient] = []

    def make(settings: Settings, key: KeyRing) -> ChatClient:
        clients.append(RecordingClient(settings, key, clock))
        return clients[-1]

    settings = settings_for(sim)
    code = await execute_run(
        settings,
        files_in(tmp_path),
        out=io.StringIO(),
        clock=clock,
        sleep=clock.sleep,
        client_factory=make,
    )
    assert code == 0
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 60
    (client,) = clients
    assert client.pauses, "the seed injects some 429s"
    assert clock.now - FakeClock().now >= 30  # waited out, on the fake clock
    for start, end in client.pauses:
        assert not [t for t in client.sent if start < t < end]
