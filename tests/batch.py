"""An in-process batch: jobs.jsonl in a directory, run as `mira-batch run` would."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.fakes import FakeClock
from tests.helpers import SENTINEL_KEY, read_jsonl, run_settings
from worker.app.run import ResumeMode, execute_run
from worker.domain.prices import PriceBook
from worker.files.outputs import RunFiles
from worker.sim.server import Simulator


class Batch:
    """jobs.jsonl in a directory, run in-process as `mira-batch run` would."""

    def __init__(self, sim: Simulator, directory: Path) -> None:
        self.sim = sim
        self.dir = directory
        self.files = RunFiles.default(
            str(directory / "jobs.jsonl"),
            results=directory / "jobs.results.jsonl",
            errors=directory / "jobs.errors.jsonl",
            summary=directory / "jobs.summary.json",
        )
        self.clock = FakeClock()

    async def run(
        self,
        *,
        mode: ResumeMode = "resume",
        force: bool = False,
        key: str | None = SENTINEL_KEY,
        real_time: bool = False,
        prices: PriceBook | None = None,
        **overrides: Any,
    ) -> int:
        overrides.setdefault("concurrency", 4)
        settings = run_settings(
            overrides.pop("base_url", None) or self.sim.base_url,
            api_key=None if key is None else SecretStr(key),
            **overrides,
        )
        if real_time:
            return await execute_run(
                settings,
                self.files,
                mode=mode,
                force=force,
                out=io.StringIO(),
                prices=prices,
            )
        return await execute_run(
            settings,
            self.files,
            mode=mode,
            force=force,
            out=io.StringIO(),
            clock=self.clock,
            sleep=self.clock.sleep,
            wall=self.clock.wall,
            prices=prices,
        )

    @property
    def results(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files.results)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return read_jsonl(self.files.errors)

    @property
    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.files.summary.read_text())
        return data

    def done_ids(self) -> list[str]:
        return [r["custom_id"] for r in self.results + self.errors]
