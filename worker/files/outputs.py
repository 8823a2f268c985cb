"""A run's output files: their names, the checks before the first request, the
run's lock, and whole-file rewrites that a kill leaves old or new, never torn.

One run per output set: a cron overlap must not send (and pay for) every job
twice. The lock is an exclusive `flock` on `<results>.lock`, held for the whole
run; the kernel releases it when the process ends, even on SIGKILL. The file is
left in place: removing it would let a third run lock a fresh file while a
second still holds the old one.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from worker.domain.job import Shard
from worker.errors import ConfigError


def check_output_paths(input_path: str, outputs: dict[str, Path]) -> None:
    """Every output writable, and distinct from the others and from the input.

    Compared after resolving links, so a symlink cannot make two names one file.

    Raises:
        ConfigError: a conflict or an unwritable path; nothing was sent.
    """
    seen: dict[Path, str] = {}
    if input_path != "-":
        seen[Path(input_path).resolve()] = "the input"
    for what, path in outputs.items():
        real = path.resolve()
        if real in seen:
            raise ConfigError(
                f"the {what} file {path} is the same file as {seen[real]}: "
                "give each output its own path"
            )
        seen[real] = f"the {what} file"
        _check_writable(path, what)


def _check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        raise ConfigError(f"the {what} file {path} is a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"the {what} file {path} is not writable")
        directory = path.parent
    else:
        directory = path.parent
        while not directory.exists():  # created on first write
            directory = directory.parent
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        # The summary is replaced through a temporary file beside it.
        raise ConfigError(
            f"cannot write the {what} file {path}: {directory} is not writable"
        )


class RunLock:
    """An exclusive lock on `<results>.lock` for the life of the run."""

    def __init__(self, results: Path) -> None:
        self.path = results.with_name(results.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        """Take the lock, or refuse at once.

        Raises:
            ConfigError: another run holds it (its PID is named).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the lock {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another mira-batch run (PID {holder}) is using these output files "
                f"(lock {self.path}); let it finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


@dataclass(frozen=True, slots=True)
class RunFiles:
    """Where a run reads and writes, and which shard of the input it runs."""

    input: str
    results: Path
    errors: Path
    summary: Path
    shard: Shard | None = None
    report: Path | None = None  # the HTML run report; None: none is written

    @property
    def stem(self) -> str:
        """The name the outputs share (the metrics' `input` label)."""
        return self.summary.name.removesuffix(".summary.json")

    def sibling_summaries(self) -> list[Path]:
        """The summary files the other shards of the input write beside this
        one's (none for a run that is no shard)."""
        shard = self.shard
        if shard is None:
            return []
        base = self.stem.removesuffix(f".shard-{shard.index}-of-{shard.count}")
        return [
            self.summary.parent / f"{base}.shard-{k}-of-{shard.count}.summary.json"
            for k in range(shard.count)
            if k != shard.index
        ]

    def listing(self) -> dict[str, str]:
        """The files, for the summary."""
        files = {
            "input": self.input,
            "results": str(self.results),
            "errors": str(self.errors),
        }
        if self.report is not None:
            files["report"] = str(self.report)
        return files

    @classmethod
    def default(
        cls,
        source: str,
        *,
        results: Path | None = None,
        errors: Path | None = None,
        summary: Path | None = None,
        shard: Shard | None = None,
        directory: Path = Path(),
        report: Path | bool | None = True,
    ) -> RunFiles:
        """`<input stem>[.shard-K-of-N].results.jsonl` etc. in `directory` (by
        default the working directory); `report` True for the default report,
        beside the summary, False for none."""
        stem = "stdin" if source == "-" else _stem(Path(source))
        if shard is not None:
            stem = f"{stem}.shard-{shard.index}-of-{shard.count}"
        summary = summary or directory / f"{stem}.summary.json"
        if report is True:  # beside the summary it is drawn from
            report = summary.parent / f"{stem}.report.html"
        return cls(
            input=source,
            results=results or directory / f"{stem}.results.jsonl",
            errors=errors or directory / f"{stem}.errors.jsonl",
            summary=summary,
            shard=shard,
            report=report or None,
        )


# An input's own extension is left out of its outputs' names.
INPUT_SUFFIXES = (
    ".jsonl",
    ".ndjson",
    ".json",
    ".csv",
    ".tsv",
    ".tab",
    ".parquet",
    ".pq",
)


def _stem(path: Path) -> str:
    """`data` for `data.csv` or `data.jsonl`: the name the outputs share."""
    suffix = path.suffix.lower()
    return path.name[: -len(suffix)] if suffix in INPUT_SUFFIXES else path.name


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
