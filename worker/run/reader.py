"""The reader: the input's items (lines, or a table's rows) -> jobs on a bounded
queue, for the workers to take.

Item by item it builds the job, keeps this shard's, and drops repeats and done
ids; an invalid item is answered here with its error record (CONTRACT section
4). What the input's content calls for is said when the first such job is
read, not after the whole file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from worker.domain.job import Job, Shard
from worker.errors import InvalidJobError, OutputError
from worker.files.idset import IdSet, fingerprint64
from worker.files.records import Recorder
from worker.files.resume import ResumeState
from worker.files.sources import JobSource
from worker.report.tally import Tally
from worker.run.hooks import Hooks
from worker.run.queue import JobQueue

log = logging.getLogger("worker.run")

CHANGED_KEPT = (
    "%d jobs changed since they were answered (lines %s); their old answers are "
    "kept; --redo-changed sends them again"
)
CHANGED_REDONE = (
    "%d jobs changed since they were answered (lines %s): sent again; their old "
    "records go to the replaced file"
)
SYSTEM_DROPPED = (
    "%d jobs carry system messages, which Mira drops before the model sees "
    "them: their instructions never arrive (--system-as-user folds them into "
    "the first user message)"
)
FIRST_SYSTEM = (
    "%s %d carries system messages, which Mira drops before the model sees "
    "them: their instructions never arrive (--system-as-user folds them into "
    "the first user message; the summary counts every such job)"
)


class Intake:
    """Admits the input's items one at a time; keeps the ids seen so far
    (compactly)."""

    def __init__(
        self,
        *,
        source: JobSource,
        shard: Shard | None,
        resume: ResumeState,
        tally: Tally,
        recorder: Recorder,
        hooks: Hooks | None = None,
        expected_lines: int = 0,
        redo_changed: bool = False,
    ) -> None:
        self.source = source
        self._hooks = hooks or Hooks()
        self._redo_changed = redo_changed
        self._shard = shard
        self._resume = resume
        self.tally = tally
        self._recorder = recorder
        self._seen = IdSet(expected=expected_lines)
        self._changed_lines: list[int] = []
        self._redone: dict[str, str] = {}
        self.last_line = 0  # the last input line admitted or turned away

    def admit(self, line_no: int, item: object) -> Job | None:
        """The job to run for this item, or None (other shard, done, invalid,
        or given its outcome by a hook).

        Raises:
            OutputError: a record could not be written.
        """
        self.last_line = line_no
        try:
            job = self.source.job(line_no, item)
        except InvalidJobError as exc:
            self._reject(exc)
            return None
        if self._shard is not None and not self._shard.holds(job.id):
            return None
        tally, resume = self.tally, self._resume
        tally.read()
        if not self._seen.add(job.id):
            if line_no in resume.invalid_lines:
                tally.skipped()
            else:
                repeat = InvalidJobError(
                    f"id {job.id!r} repeats an earlier line's id",
                    line_no=line_no,
                    job_id=None,
                )
                self._write_invalid(repeat, job_id=None)
            return None
        if job.id in resume.done and not self._changed(job, line_no):
            tally.skipped()
            return None
        if self._hooks.settled_elsewhere(job):
            return None  # from the cache, or from a job asking the same request
        if job.system_messages:
            if not tally.stats.jobs_with_system:
                log.warning(FIRST_SYSTEM, self.source.unit, line_no)
            tally.carries_system()
        return job

    def unread(self, line_no: int, item: object) -> None:
        """Count an item the run never got to read (it stopped first): this
        shard's, and done before or not attempted."""
        self.last_line = line_no
        job_id = self.source.job_id(line_no, item)
        owner = job_id if job_id is not None else f"line-{line_no}"
        if self._shard is not None and not self._shard.holds(owner):
            return
        self.tally.read()
        if job_id in self._resume.done or line_no in self._resume.invalid_lines:
            self.tally.skipped()

    def _changed(self, job: Job, line_no: int) -> bool:
        """True when a done job asks another request now and --redo-changed
        sends it again; a change is noted either way."""
        recorded = self._resume.fingerprints.get(job.id)
        if recorded is None or recorded == fingerprint64(job.fingerprint):
            return False  # unchanged, or recorded before fingerprints
        self._changed_lines.append(line_no)
        if not self._redo_changed:
            return False
        self._redone[job.id] = job.fingerprint
        return True

    def reading(self) -> Reading:
        """What the reader found, for after the run."""
        return Reading(dict(self._redone))

    def report_changed(self) -> None:
        """Say once how many done jobs changed since they were answered."""
        lines = self._changed_lines
        if not lines:
            return
        shown = ", ".join(str(n) for n in lines[:10]) + (
            ", ..." if len(lines) > 10 else ""
        )
        if self._redo_changed:
            log.warning(CHANGED_REDONE, len(lines), shown)
        else:
            log.warning(CHANGED_KEPT, len(lines), shown)

    def _reject(self, exc: InvalidJobError) -> None:
        job_id = exc.job_id
        owner = job_id if job_id is not None else f"line-{exc.line_no}"
        if self._shard is not None and not self._shard.holds(owner):
            return
        self.tally.read()
        if job_id is not None and not self._seen.add(job_id):
            job_id = None  # ids stay unique across the output files
        if (job_id is not None and job_id in self._resume.done) or (
            job_id is None and exc.line_no in self._resume.invalid_lines
        ):
            self.tally.skipped()
            return
        self._write_invalid(exc, job_id=job_id)

    def _write_invalid(self, exc: InvalidJobError, *, job_id: str | None) -> None:
        self.tally.invalid()
        log.warning(
            "%s %d is not a valid job: %s",
            self.source.unit,
            exc.line_no,
            exc.message,
            extra={"job_id": job_id, "line": exc.line_no},
        )
        self._recorder.invalid(exc, job_id=job_id)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the reader learned: the done jobs whose request changed that were
    sent again (id -> the new request's fingerprint)."""

    redone: dict[str, str] = field(default_factory=dict)


async def feed(intake: Intake, queue: JobQueue, *, workers: int) -> None:
    """Put every job of the input on the queue, then the workers' end markers.

    A graceful stop cancels this task wherever it waits (an idle pipe, a full
    queue); the end markers are posted all the same, so the workers finish.
    """
    try:
        if intake.source.notice:
            log.info("%s", intake.source.notice)
        async for line_no, item in intake.source.items():
            job = intake.admit(line_no, item)
            if job is not None:
                await queue.put(job)
        intake.tally.input_read()
        intake.report_changed()
    except OutputError:
        return  # an invalid line's record could not be written: the run stops
    finally:
        queue.end(workers)


def count_unread(intake: Intake, *, budget_s: float) -> None:
    """After a stop, count the items the reader never got to, so the summary's
    total is the whole input's. A pipe cannot be read further; a file is read
    again past the last item read, within `budget_s` seconds.
    """
    if not intake.source.rereadable():
        return
    started = time.monotonic()
    for line_no, item in intake.source.unread(intake.last_line):
        intake.unread(line_no, item)
        if time.monotonic() - started > budget_s:
            log.info("the rest of the input was not counted: it is too long")
            return
    intake.tally.input_read()


def make_intake(
    source: JobSource,
    *,
    shard: Shard | None,
    resume: ResumeState,
    tally: Tally,
    recorder: Recorder,
    hooks: Hooks | None = None,
    redo_changed: bool = False,
) -> Intake:
    """An Intake sized from the input's count (0 for a pipe)."""
    lines = source.expected()
    # For the progress ETA before the whole file is read: blank lines and
    # the shard split make it an estimate.
    tally.expect(lines // (shard.count if shard else 1))
    return Intake(
        source=source,
        shard=shard,
        resume=resume,
        tally=tally,
        recorder=recorder,
        hooks=hooks,
        expected_lines=lines,
        redo_changed=redo_changed,
    )
