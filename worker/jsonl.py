"""Streaming JSONL in (input lines) and out (the single writer of result lines)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from worker.errors import ConfigError
from worker.logs import scrub_bytes

_CHUNK_BYTES = 1 << 16
_PIPE_CHUNKS_AHEAD = 4
_WRITE_BUFFER_BYTES = 1 << 16


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
    if not _is_regular_file(fh):
        return 0
    fd, count, offset = fh.fileno(), 0, 0
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def _is_regular_file(fh: BinaryIO) -> bool:
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
    chunks = _file_chunks(fh) if _is_regular_file(fh) else _pipe_chunks(fh)
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


def dumps_line(record: dict[str, Any]) -> bytes:
    """One JSONL line (newline included), scrubbed of anything shaped like a key.

    A server that echoes a credential into a body must not put it in our files.
    """
    return scrub_bytes(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


class ResultWriter:
    """The only writer of the results and errors files.

    Lines are appended as jobs finish; every line written during one turn of the
    event loop reaches the OS in one flush at the end of that turn, so a killed
    process loses nothing the files were told. `sync` makes it durable (fsync).
    """

    def __init__(self, results_path: Path, errors_path: Path) -> None:
        self.results_path = results_path
        self.errors_path = errors_path
        self._results: BinaryIO | None = None
        self._errors: BinaryIO | None = None
        self._flush_scheduled = False
        self._dirty = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Open both files for appending.

        Raises:
            ConfigError: a file cannot be opened for writing.
        """
        try:
            for path in (self.results_path, self.errors_path):
                path.parent.mkdir(parents=True, exist_ok=True)
            self._results = open(self.results_path, "ab", _WRITE_BUFFER_BYTES)  # noqa: SIM115
            self._errors = open(self.errors_path, "ab", _WRITE_BUFFER_BYTES)  # noqa: SIM115
        except OSError as exc:
            self.close()
            raise ConfigError(
                f"cannot open output {exc.filename}: {exc.strerror}"
            ) from None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def write_result(self, record: dict[str, Any]) -> None:
        """Append one success line."""
        assert self._results is not None, "writer is not open"
        self._append(self._results, dumps_line(record))

    def write_error(self, record: dict[str, Any]) -> None:
        """Append one failure line."""
        assert self._errors is not None, "writer is not open"
        self._append(self._errors, dumps_line(record))

    def _append(self, fh: BinaryIO, line: bytes) -> None:
        fh.write(line)
        self._dirty = True
        if self._loop is None:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand every buffered line to the OS."""
        self._flush_scheduled = False
        for fh in (self._results, self._errors):
            if fh is not None and not fh.closed:
                fh.flush()

    async def sync(self) -> None:
        """Flush, then fsync both files off the event loop."""
        if not self._dirty:
            return
        self._dirty = False
        self.flush()
        fds = [
            fh.fileno() for fh in (self._results, self._errors) if fh and not fh.closed
        ]
        await asyncio.to_thread(_fsync_all, fds)

    async def sync_every(self, interval_s: float) -> None:
        """fsync at least once every interval_s until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.sync()

    def close(self) -> None:
        """Flush, fsync and close; safe to call twice."""
        for fh in (self._results, self._errors):
            if fh is not None and not fh.closed:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        # Closed under us at exit: close() fsyncs again anyway.
        with contextlib.suppress(OSError):
            os.fsync(fd)
