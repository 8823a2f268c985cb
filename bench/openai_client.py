"""What users write today: the official openai SDK's AsyncOpenAI with a semaphore.

Prints one JSON line: requests, elapsed_s, requests_per_s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import openai


async def main(path: str, base_url: str, key: str, concurrency: int) -> None:
    with open(path, "rb") as fh:
        bodies = [json.loads(line)["body"] for line in fh if line.strip()]
    client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=2)
    client = client.with_options(timeout=120)
    semaphore = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok
        async with semaphore:
            await client.chat.completions.create(**body)
            ok += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(body) for body in bodies))
    elapsed = time.perf_counter() - started
    await client.close()
    print(
        json.dumps(
            {"requests": ok, "elapsed_s": elapsed, "requests_per_s": ok / elapsed}
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
