"""Output files rewritten whole, so that a kill leaves the old file or the new one:
the summary, --fresh, --retry-failed, and records set aside for a rerun."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from worker.errors import ConfigError


def atomic_write(path: Path, data: bytes) -> None:
    """Replace a file's content so a kill leaves either the old or the new file.

    A new file is private (0600); a file that exists keeps its mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def replaced_path(results: Path) -> Path:
    """`<stem>.replaced.jsonl` beside `<stem>.results.jsonl`: records taken out."""
    stem = results.name.removesuffix(".jsonl").removesuffix(".results")
    return results.with_name(f"{stem}.replaced.jsonl")


def set_aside(path: Path, lines: set[int], replaced: Path) -> int:
    """Move the given lines of an output file to `replaced` (appended first, so
    a kill between the two steps duplicates a record but never loses one);
    return how many moved.

    Raises:
        ConfigError: a file cannot be read or rewritten.
    """
    kept: list[bytes] = []
    moved: list[bytes] = []
    try:
        with open(path, "rb") as fh:
            for line_no, line in enumerate(fh, start=1):
                (moved if line_no in lines else kept).append(line)
        with open(replaced, "ab") as out:
            out.writelines(moved)
            out.flush()
            os.fsync(out.fileno())
        atomic_write(path, b"".join(kept))
    except OSError as exc:
        raise ConfigError(f"cannot rewrite {path}: {exc.strerror}") from None
    return len(moved)
