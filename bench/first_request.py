"""How soon the first completion leaves a freshly started `mira-batch run`.

The server is a loopback socket that reads each request and never answers:
the account routes (the prices) hang, and so does the first completion. The
figure is the wall time from starting the process to the first
`POST .../chat/completions` arriving, the real command each time (so Python's
start and every import are in it, as a cron job or a container pays them).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.mira import KEY, _mira_batch


async def _once(work: Path) -> float:
    arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answered, never closed till the end
        head = await reader.read(65536)
        if b"/chat/completions" in head and not arrived.done():
            arrived.set_result(time.perf_counter())

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {
        **os.environ,
        "MIRA_API_KEY": KEY,
        "MIRA_BASE_URL": f"http://127.0.0.1:{port}/v1",
    }
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *_mira_batch(),
        "run",
        "jobs.jsonl",
        "--fresh",
        "--force",
        "--progress",
        "off",
        cwd=work,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await asyncio.wait_for(arrived, 30) - started
    finally:
        proc.kill()
        await proc.wait()
        for writer in held:
            writer.close()
        server.close()


def run_first_request(work: Path, rounds: int = 9) -> dict[str, Any]:
    """`rounds` starts; prints a line."""
    with open(work / "jobs.jsonl", "w") as fh:
        for i in range(10):
            fh.write(json.dumps({"id": f"j{i}", "prompt": f"Question {i}?"}) + "\n")
    times = [asyncio.run(_once(work)) for _ in range(rounds)]
    result = {
        "rounds": rounds,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "min_s": round(min(times), 3),
    }
    print(
        f"  first completion after the start: median {result['median_s']:.2f} s, "
        f"{result['min_s']:.2f}..{result['max_s']:.2f} s over {rounds} starts "
        "(account routes that never answer)"
    )
    return result
