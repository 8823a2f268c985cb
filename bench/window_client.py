"""mira-batch's pipeline timed as the lean client times itself: first send to last.

    python bench/window_client.py JOBS BASE_URL KEY CONCURRENCY

Runs `execute_run` in-process (the same code as `mira-batch run`, with the same GC
tuning) behind a client that notes when the first request left and the last answer
came. Prints one JSON line with requests_per_s over that window, so start-up and
shut-down (imports, the final fsync, the summary) do not count, as they do not for
bench/lean_client.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from worker.api.client import ChatClient
from worker.app.run import execute_run
from worker.cli import tune_gc_for_throughput
from worker.config import Settings
from worker.domain.answer import Answer
from worker.files.outputs import RunFiles


class TimedClient(ChatClient):
    """A ChatClient that keeps the time of its first send and its last answer."""

    first: float | None = None
    last: float | None = None

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        if TimedClient.first is None:
            TimedClient.first = time.perf_counter()
        reply = await super().complete(payload)
        TimedClient.last = time.perf_counter()
        return reply


async def main(jobs: str, base_url: str, key: str, concurrency: int) -> None:
    settings = Settings(
        api_key=SecretStr(key),
        base_url=base_url,
        concurrency=concurrency,
        progress="off",
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = RunFiles(
            input=jobs,
            results=out / "r.jsonl",
            errors=out / "e.jsonl",
            summary=out / "s.json",
        )
        await execute_run(
            settings,
            files,
            out=io.StringIO(),
            client_factory=lambda s, key: TimedClient(
                s.base_url,
                key,
                timeout_s=s.request_timeout_s,
                max_connections=s.concurrency,
            ),
        )
        with open(out / "r.jsonl", "rb") as fh:
            requests = sum(1 for _ in fh)
    assert TimedClient.first is not None
    assert TimedClient.last is not None
    elapsed = TimedClient.last - TimedClient.first
    print(
        json.dumps(
            {
                "requests": requests,
                "elapsed_s": elapsed,
                "requests_per_s": requests / elapsed,
            }
        )
    )


if __name__ == "__main__":
    tune_gc_for_throughput()
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
