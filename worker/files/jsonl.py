"""Streaming JSONL input: the job file opened, counted, and read line by line."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

from worker.errors import ConfigError

_CHUNK_BYTES = 1 << 16
_PIPE_CHUNKS_AHEAD = 4


def open_input(source: str) -> BinaryIO:
    """The job file opened for binary reading; `-` is standard input.

    Raises:
        ConfigError: the file cannot be opened.
    """
    if source == "-":
        return sys.stdin.buffer
    try:
        return open(source, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot open input {source}: {exc.strerror}") from None


def count_lines(fh: BinaryIO) -> int:
    """Newlines in a regular file (0 for a pipe), reading it at memory speed.

    Used only to size tables up front; the file position is left where it was.
    """
    if not is_regular_file(fh):
        return 0
    fd, count, offset = fh.fileno(), 0, 0
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def lines_after(fh: BinaryIO, after: int) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) for every non-blank line past line `after` of a
    regular file, read again from its start (the file position is left where it
    was); nothing for a pipe, which cannot be read again."""
    if not is_regular_file(fh):
        return
    fd, offset, line_no, pending = fh.fileno(), 0, 0, b""
    while chunk := os.pread(fd, _CHUNK_BYTES * 16, offset):
        offset += len(chunk)
        newlines = chunk.count(b"\n")
        if not pending and line_no + newlines < after:
            line_no += newlines  # ends inside a line before `after`: only counted
            continue
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            line_no += 1
            if line_no > after and line.strip():
                yield line_no, line
    if pending.strip() and line_no + 1 > after:
        yield line_no + 1, pending


def is_regular_file(fh: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError):
        return False


async def iter_lines(fh: BinaryIO) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, bytes) for every non-blank line, read in chunks.

    A regular file is read on the event loop (a chunk costs microseconds); a pipe
    is read by a daemon thread, so a slow producer never stalls the requests in
    flight and an idle one never keeps a stopping run alive.
    """
    chunks = _file_chunks(fh) if is_regular_file(fh) else _pipe_chunks(fh)
    pending = b""
    line_no = 0
    async for chunk in chunks:
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            line_no += 1
            if line.strip():
                yield line_no, line
    if pending.strip():
        yield line_no + 1, pending


async def _file_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    read1 = getattr(fh, "read1", fh.read)
    while chunk := read1(_CHUNK_BYTES):
        yield chunk
        # Reading a local file never blocks; let the workers run between chunks.
        await asyncio.sleep(0)


async def _pipe_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    room = threading.Semaphore(_PIPE_CHUNKS_AHEAD)  # backpressure on the producer
    fd = fh.fileno()

    def pump() -> None:
        # A daemon thread, not the default executor: asyncio.run() joins that
        # executor at exit, and a read blocked on an idle pipe would never return.
        # It reads the descriptor itself: a thread blocked inside the buffered
        # reader would hold its lock, and the interpreter aborts on it at exit.
        while True:
            room.acquire()
            try:
                chunk = os.read(fd, _CHUNK_BYTES)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is gone: the run is over
                return
            if not chunk:
                return

    threading.Thread(target=pump, name="mira-batch-input", daemon=True).start()
    while chunk := await chunks.get():
        room.release()
        yield chunk
