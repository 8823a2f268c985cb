"""Streaming JSONL input: the job file opened, counted, and read line by line,
in time proportional to its size and memory bounded by the longest line Mira
could take: a longer one is measured, not kept, and comes as `Oversized`."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from worker.errors import ConfigError

_CHUNK_BYTES = 1 << 16
_PIPE_CHUNKS_AHEAD = 4
BOM = b"\xef\xbb\xbf"
# Mira refuses a request body over 2 MiB (413): a line that long cannot become
# one. A little more is read, for the line's own shape around the body.
MAX_LINE_BYTES = 2 * 1024 * 1024 + 64 * 1024


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than MAX_LINE_BYTES: its size; its bytes were not kept."""

    size: int


Line = bytes | Oversized


class LineSplitter:
    """Bytes in, whole lines out, each byte looked at once: a line's pieces are
    kept until its newline comes (and dropped once it is too long to be a
    request). A leading UTF-8 byte order mark is skipped; blank lines are not
    given out, but counted."""

    __slots__ = ("_limit", "_parts", "_size", "_started", "line_no")

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._started = False
        self.line_no = 0

    def feed(self, chunk: bytes) -> list[tuple[int, Line]]:
        """The lines this chunk ends."""
        if not self._started:
            self._started = True
            chunk = chunk.removeprefix(BOM)
        out: list[tuple[int, Line]] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            self._emit(out)
            start = end + 1
        if start < len(chunk):
            self._add(chunk[start:])
        return out

    def end(self) -> list[tuple[int, Line]]:
        """The last line, when the input does not end with a newline."""
        out: list[tuple[int, Line]] = []
        if self._size:
            self._emit(out)
        return out

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size <= self._limit:
            self._parts.append(piece)
        elif self._parts:
            self._parts.clear()  # too long to be a request: measured only

    def _emit(self, out: list[tuple[int, Line]]) -> None:
        self.line_no += 1
        if self._size > self._limit:
            out.append((self.line_no, Oversized(self._size)))
        else:
            line = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            if line.strip():
                out.append((self.line_no, line))
        self._parts.clear()
        self._size = 0


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


def lines_after(fh: BinaryIO, after: int) -> Iterator[tuple[int, Line]]:
    """(line number, line) for every non-blank line past line `after` of a
    regular file, read again from its start (the file position is left where it
    was); nothing for a pipe, which cannot be read again."""
    if not is_regular_file(fh):
        return
    fd, offset, splitter = fh.fileno(), 0, LineSplitter()
    while chunk := os.pread(fd, _CHUNK_BYTES * 16, offset):
        offset += len(chunk)
        for line_no, line in splitter.feed(chunk):
            if line_no > after:
                yield line_no, line
    for line_no, line in splitter.end():
        if line_no > after:
            yield line_no, line


def is_regular_file(fh: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError):
        return False


async def iter_lines(fh: BinaryIO) -> AsyncIterator[tuple[int, Line]]:
    """(line number, line) for every non-blank line, read in chunks.

    A regular file is read on the event loop (a chunk costs microseconds); a pipe
    is read by a daemon thread, so a slow producer never stalls the requests in
    flight and an idle one never keeps a stopping run alive.
    """
    splitter = LineSplitter()
    async for chunk in read_chunks(fh):
        for item in splitter.feed(chunk):
            yield item
    for item in splitter.end():
        yield item


def read_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    """The input's bytes in chunks: a file's on the loop, a pipe's by a thread."""
    return _file_chunks(fh) if is_regular_file(fh) else _pipe_chunks(fh)


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
