"""The single writer of result and error lines: append, hand to the OS, fsync.

Each line reaches the OS the moment its job finishes (one write per line, no
buffer of ours), so a write error is known before another request can start:
the writer reports it (`on_failure`), refuses every later line, and the run
stops with exit 7. A kill at any instant leaves at most a torn last line, which
the next run repairs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from worker.errors import ConfigError, OutputError
from worker.logs import scrub_bytes

# Files the run creates hold prompts and completions: private to their owner.
NEW_FILE_MODE = 0o600


def dumps_line(record: Mapping[str, object]) -> bytes:
    """One JSONL line (newline included), scrubbed of anything shaped like a key.

    A server that echoes a credential into a body must not put it in our files.

    Raises:
        orjson.JSONEncodeError: the record cannot be serialised (nested too deep).
    """
    return scrub_bytes(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


class ResultWriter:
    """The only writer of the results and errors files."""

    def __init__(
        self,
        results_path: Path,
        errors_path: Path,
        *,
        on_failure: Callable[[OutputError], None] | None = None,
    ) -> None:
        self.results_path = results_path
        self.errors_path = errors_path
        self._on_failure = on_failure
        self._fds: dict[Path, int] = {}
        self._dirty = False
        self.failure: OutputError | None = None

    def open(self) -> None:
        """Open both files for appending (created 0600).

        Raises:
            ConfigError: a file cannot be opened for writing.
        """
        try:
            for path in (self.results_path, self.errors_path):
                path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                self._fds[path] = os.open(path, flags, NEW_FILE_MODE)
        except OSError as exc:
            self.close()
            raise ConfigError(
                f"cannot open output {exc.filename}: {exc.strerror}"
            ) from None

    def write_result(self, record: Mapping[str, object]) -> None:
        """Append one success line.

        Raises:
            OutputError: the line could not be written; the run must stop.
            orjson.JSONEncodeError: the record cannot be serialised.
        """
        self._append(self.results_path, dumps_line(record))

    def write_error(self, record: Mapping[str, object]) -> None:
        """Append one failure line (raises as `write_result`)."""
        self._append(self.errors_path, dumps_line(record))

    def _append(self, path: Path, line: bytes) -> None:
        if self.failure is not None:
            raise self.failure  # never append after a torn line
        fd = self._fds[path]
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise self._fail(path, exc) from None
        self._dirty = True

    def _fail(self, path: Path, exc: OSError) -> OutputError:
        if self.failure is None:
            self.failure = OutputError(f"cannot write {path}: {exc.strerror}")
            if self._on_failure is not None:
                self._on_failure(self.failure)
        return self.failure

    async def sync(self) -> None:
        """fsync both files off the event loop, if anything was written."""
        if not self._dirty or self.failure is not None:
            return
        self._dirty = False
        fds = dict(self._fds)
        failed = await asyncio.to_thread(_fsync_all, fds)
        if failed is not None:
            self._fail(*failed)

    async def sync_every(self, interval_s: float) -> None:
        """fsync at least once every interval_s until cancelled or failed."""
        while self.failure is None:
            await asyncio.sleep(interval_s)
            await self.sync()

    @asynccontextmanager
    async def syncing(self, interval_s: float) -> AsyncIterator[None]:
        """fsync every `interval_s` while the block lasts; close the files after."""
        syncer = asyncio.create_task(self.sync_every(interval_s))
        try:
            yield
        finally:
            # The periodic fsync ends before the files close (close fsyncs them
            # once more); asyncio.wait never swallows a cancellation of ours.
            syncer.cancel()
            await asyncio.wait([syncer])
            self.close()

    def close(self) -> None:
        """fsync and close; a failure is reported, not raised. Safe to call twice."""
        fds, self._fds = self._fds, {}
        if self.failure is None and (failed := _fsync_all(fds)) is not None:
            self._fail(*failed)
        for fd in fds.values():
            os.close(fd)


def _fsync_all(fds: dict[Path, int]) -> tuple[Path, OSError] | None:
    """fsync each file; the first that fails, with its error."""
    for path, fd in fds.items():
        try:
            os.fsync(fd)
        except OSError as exc:
            return path, exc
    return None
