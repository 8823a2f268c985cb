"""Logging to stderr as text or JSON lines, with every record scrubbed of API keys."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import orjson

# Anything shaped like a Mira key, or a bearer credential, whatever else it is.
_SECRET = re.compile(r"sk-mira-[0-9A-Za-z]{4,}|(?i:bearer)\s+[^\s'\"\\]+")
_KEY_BYTES = re.compile(rb"sk-mira-[0-9A-Za-z]{4,}")
_PLACEHOLDER = "[REDACTED]"
# The secret parts (40 hex) of the keys in use, as they may be echoed: a server
# that quotes the key without its prefix must not get it into a log or a file.
_secrets: list[str] = []
_FIELDS = (
    "line",
    "job_id",
    "status",
    "attempt",
    "request_id",
    "stop_reason",
    "summary",
)


def register_secret(key: str) -> None:
    """Mask this key's secret part wherever it appears, prefix or not."""
    secret = key.removeprefix("sk-mira-")
    for variant in (secret, secret.lower(), secret.upper()):
        if variant not in _secrets:
            _secrets.append(variant)


def scrub(text: str) -> str:
    """Replace anything that looks like a key, or is one in use, with a placeholder."""
    text = _SECRET.sub(_PLACEHOLDER, text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _PLACEHOLDER)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """Mask keys in a JSON line or document; untouched (and cheap) without one.

    Only the key shape and the keys in use are matched: model output that says
    "bearer" is data. The placeholder holds no quote or backslash, so JSON stays
    valid.
    """
    if b"sk-mira-" in data:
        data = _KEY_BYTES.sub(_PLACEHOLDER.encode(), data)
    for secret in _secrets:
        encoded = secret.encode()
        if encoded in data:
            data = data.replace(encoded, _PLACEHOLDER.encode())
    return data


class ScrubbingTextFormatter(logging.Formatter):
    """`time level logger: message`, scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, known fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # The whole serialised line is scrubbed, not its fields: a key inside a
        # nested field (a server's 401 detail in the summary) is masked too.
        return scrub(orjson.dumps(entry, default=str).decode())


def setup_logging(level: str, fmt: str, *, stream: TextIO | None = None) -> None:
    """Route every logger (aiohttp's too) to stderr in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ScrubbingTextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python's own warnings become log records, so JSON mode stays JSON.
    logging.captureWarnings(True)


@contextmanager
def logs_into(stream: TextIO, *, instead_of: TextIO) -> Iterator[None]:
    """While the block lasts, log lines bound for `instead_of` go to `stream`:
    a live display's proxy prints each one above the display, never into it."""
    moved = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is instead_of
    ]
    for handler in moved:
        handler.setStream(stream)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(instead_of)


def emit(stream: TextIO, text: str) -> None:
    """Write user-facing text (summary, reports), scrubbed like every log line."""
    stream.write(scrub(text))
    if not text.endswith("\n"):
        stream.write("\n")
    stream.flush()


class QuietStream:
    """stdout or stderr, for a process whose output may go away: a closed
    pipe (`| head`), a closed terminal, a full disk under a redirect. The first
    failed write makes it quiet for good; the descriptor is pointed at
    /dev/null, so that nothing later (the interpreter's last flush included)
    fails on it. The run's exit code and files never depend on its output."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if (stream := self._stream) is not None:
            try:
                return stream.write(text)
            except (OSError, ValueError):
                self._go_quiet(stream)
        return len(text)

    def flush(self) -> None:
        if (stream := self._stream) is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                self._go_quiet(stream)

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        # fileno, encoding, errors...: what rich and logging may ask.
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def _go_quiet(self, stream: TextIO) -> None:
        self._stream = None
        try:
            fd = stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError):
            return
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
        finally:
            os.close(devnull)


def _open_standard_descriptors() -> None:
    """A process started with 0, 1 or 2 closed gets /dev/null there: else the
    next file opened (a results file) would take the number, and anything
    written to standard output or error would land in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


@contextmanager
def quiet_standard_streams() -> Iterator[None]:
    """While the block lasts, stdout and stderr are QuietStreams."""
    _open_standard_descriptors()
    saved = sys.stdout, sys.stderr
    sys.stdout = QuietStream(saved[0])
    sys.stderr = QuietStream(saved[1])
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
