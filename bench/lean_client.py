"""The leanest aiohttp batch client: the reference for what Python + aiohttp can do.

N workers share one session and post every line's body; nothing is parsed, retried
or written. Prints one JSON line: requests, elapsed_s, requests_per_s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(path: str, url: str, key: str, concurrency: int) -> None:
    with open(path, "rb") as fh:
        bodies = [
            json.dumps(json.loads(line)["body"]).encode() for line in fh if line.strip()
        ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    ok = 0

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(url, data=body) as resp:
                await resp.read()
                ok += resp.status == 200

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(work(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {"requests": ok, "elapsed_s": elapsed, "requests_per_s": ok / elapsed}
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
