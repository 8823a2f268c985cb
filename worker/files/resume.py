"""What earlier runs finished: the output files are the checkpoint."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from worker.domain.answer import check_answer
from worker.errors import ConfigError, WorkerError
from worker.files.idset import FingerprintMap, IdSet
from worker.files.jsonl import count_lines
from worker.files.outputs import atomic_write, replaced_path, set_aside

log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class ResumeState:
    """Ids (and invalid line numbers) already written by earlier runs."""

    done: IdSet = field(default_factory=IdSet)
    invalid_lines: set[int] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0
    # Lines of the results file that hold no answer (an upstream-error or
    # moderation text, or nothing, kept by an earlier version): not done.
    not_answers: list[int] = field(default_factory=list)
    # The fingerprint each done id's record was for (records that carry one).
    fingerprints: FingerprintMap = field(default_factory=FingerprintMap)


def repair_trailing_line(path: Path) -> int:
    """Drop a torn last line left by a kill; return the bytes dropped."""
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return 0
            # Walk back to the last newline; a torn line is at most one record long.
            pos, block, keep = size, 1 << 16, 0
            while pos > 0:
                start = max(0, pos - block)
                fh.seek(start)
                index = fh.read(pos - start).rfind(b"\n")
                if index >= 0:
                    keep = start + index + 1
                    break
                pos = start
            fh.truncate(keep)
            os.fsync(fh.fileno())
            return size - keep
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise ConfigError(f"cannot repair {path}: {exc.strerror}") from None


def read_records(path: Path) -> Iterator[tuple[int, dict[str, object] | None]]:
    """(line number, record) for every non-blank line of an output file; the
    record is None for a line that is not a JSON object (a torn last line).

    Raises:
        ConfigError: the file exists but cannot be read.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            yield line_no, record if isinstance(record, dict) else None


def _scan(path: Path, state: ResumeState, *, is_errors: bool) -> None:
    for line_no, record in read_records(path):
        if record is None:
            log.warning("%s line %d is not a record; ignored", path, line_no)
            continue
        if not is_errors and not _is_answer(record):
            state.not_answers.append(line_no)
            continue
        job_id = record.get("custom_id")
        if isinstance(job_id, str):
            state.done.add(job_id)
            fingerprint = record.get("request_fingerprint")
            if isinstance(fingerprint, str) and _FINGERPRINT.fullmatch(fingerprint):
                state.fingerprints.put(job_id, fingerprint)
        elif is_errors and isinstance(line := record.get("line"), int):
            state.invalid_lines.add(line)
        if is_errors:
            state.failed += 1
        else:
            state.succeeded += 1


def load_resume_state(results: Path, errors: Path) -> ResumeState:
    """Repair both files, then read every id they hold.

    Raises:
        ConfigError: a file exists but cannot be read or repaired.
    """
    dropped_by_path = {path: repair_trailing_line(path) for path in (results, errors)}
    state = ResumeState(
        done=IdSet(expected=_count_lines(results) + _count_lines(errors))
    )
    for path, is_errors in ((results, False), (errors, True)):
        dropped = dropped_by_path[path]
        if dropped:
            log.warning(
                "dropped a torn last line (%d bytes) from %s; that job will run again",
                dropped,
                path,
            )
        _scan(path, state, is_errors=is_errors)
    if state.not_answers:
        moved = set_aside(results, set(state.not_answers), replaced_path(results))
        log.warning(
            "%d results in %s hold no answer (Mira's upstream-error or moderation "
            "text, or nothing): they run again; the old records are in %s",
            moved,
            results,
            replaced_path(results),
        )
    return state


def set_aside_redone(results: Path, errors: Path, redone: dict[str, str]) -> int:
    """After a --redo-changed run: move every record of a redone job that is not
    for its new request to the replaced file, so each id has one current record.

    Raises:
        ConfigError: a file cannot be read or rewritten.
    """
    moved = 0
    for path in (results, errors):
        lines = {
            line_no
            for line_no, record in read_records(path)
            if record is not None
            and (job_id := record.get("custom_id")) in redone
            and record.get("request_fingerprint") != redone[job_id]
        }
        if lines:
            moved += set_aside(path, lines, replaced_path(results))
    return moved


def _is_answer(record: dict[str, object]) -> bool:
    response = record.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    if not isinstance(body, dict):
        return True  # not ours to judge: kept as it is
    try:
        check_answer(body, 200, None)
    except WorkerError:
        return False
    return True


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return count_lines(fh)
    except FileNotFoundError:
        return 0


def _is_non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def start_fresh(paths: list[Path], *, force: bool) -> None:
    """Empty the output files for --fresh; refuse to discard results without --force.

    Raises:
        ConfigError: a file holds data and force is off.
    """
    full = [str(path) for path in paths if _is_non_empty(path)]
    if full and not force:
        raise ConfigError(
            f"--fresh would discard {', '.join(full)}: add --force to overwrite, "
            "or drop --fresh to resume"
        )
    for path in paths:
        if path.exists():
            atomic_write(path, b"")


def release_failed(errors: Path) -> int:
    """--retry-failed: drop every error line so those jobs run again; count them.

    Raises:
        ConfigError: the errors file cannot be read or rewritten.
    """
    if not _is_non_empty(errors):
        return 0
    try:
        repair_trailing_line(errors)
        with open(errors, "rb") as fh:
            count = sum(1 for line in fh if line.strip())
        atomic_write(errors, b"")
    except OSError as exc:
        raise ConfigError(f"cannot rewrite {errors}: {exc.strerror}") from None
    return count
