"""The single writer of result and error lines: append, flush, fsync."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from worker.errors import ConfigError
from worker.logs import scrub_bytes

_WRITE_BUFFER_BYTES = 1 << 16


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
