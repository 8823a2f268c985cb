"""A hostile server's bodies: the real command's memory stays bounded, the job fails."""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.helpers import cli_command, cli_env, read_jsonl, simple_jobs, write_jobs

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
PEAK_RSS_LIMIT_MB = 200
# Runs the command and prints its peak RSS (KiB): the only child of this wrapper.
MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


async def _stream(
    request: web.Request, chunks: AsyncIterator[bytes], **headers: str
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", **headers}
    )
    if "Content-Length" in headers:
        response.content_length = int(headers["Content-Length"])
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading, as it should
    return response


async def _zeros(total: int) -> AsyncIterator[bytes]:
    block = b"0" * MIB
    for _ in range(total // MIB):
        yield block


async def _endless() -> AsyncIterator[bytes]:
    while True:
        yield b" " * MIB


async def _gzip_bomb(decompressed: int) -> AsyncIterator[bytes]:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * MIB
    for _ in range(decompressed // MIB):
        yield packer.compress(block)
    yield packer.flush()


async def huge(request: web.Request) -> web.StreamResponse:
    return await _stream(
        request, _zeros(300 * MIB), **{"Content-Length": str(300 * MIB)}
    )


async def endless(request: web.Request) -> web.StreamResponse:
    return await _stream(request, _endless())


async def bomb(request: web.Request) -> web.StreamResponse:
    return await _stream(
        request, _gzip_bomb(1024 * MIB), **{"Content-Encoding": "gzip"}
    )


KINDS = {"huge": huge, "endless": endless, "bomb": bomb}


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that answers each request with the next hostile body: a huge
    one, an endless one, a gzip bomb; and the kinds it served, in order."""
    served: list[str] = []

    async def next_body(request: web.Request) -> web.StreamResponse:
        kind = list(KINDS)[len(served) % len(KINDS)]
        served.append(kind)
        return await KINDS[kind](request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", next_body)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", served
    finally:
        await runner.cleanup()


async def test_bodies_past_the_limit_fail_their_jobs_in_bounded_memory(
    hostile: tuple[str, list[str]], tmp_path: Path
) -> None:
    # The three at once, in one process: its peak memory holds all of them.
    base_url, served = hostile
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(3))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MEASURE,
        *cli_command("run", "jobs.jsonl", "--progress", "off", "--concurrency", "3"),
        cwd=tmp_path,
        env=cli_env(base_url=base_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()
    assert sorted(served) == sorted(KINDS)  # each body once, none asked again
    peak_mb = int(out.decode().split()[-1]) / 1024
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
    errors = read_jsonl(tmp_path / "jobs.errors.jsonl")
    assert [e["error"]["code"] for e in errors] == ["response_too_large"] * 3
    assert all(e["attempts"] == 1 for e in errors)  # never paid for twice
    summary = json.loads((tmp_path / "jobs.summary.json").read_text())
    assert summary["failed"] == 3
