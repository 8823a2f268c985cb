"""Line by line, what runs: parse, keep this shard's jobs, drop repeats and done ids.

Invalid lines are answered here with their error record (CONTRACT section 4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.errors import InvalidJobError
from worker.idset import IdSet
from worker.jsonl import ResultWriter
from worker.models import Job, parse_job, shard_of
from worker.records import RecordIds, error_record
from worker.resume import ResumeState
from worker.summary import RunStats

log = logging.getLogger("worker.run")


@dataclass(frozen=True, slots=True)
class Shard:
    """Run only the jobs whose stable hash of id modulo `count` is `index`."""

    index: int
    count: int

    def holds(self, job_id: str) -> bool:
        """True when this shard owns the id."""
        return shard_of(job_id, self.count) == self.index


class Intake:
    """Admits input lines one at a time; keeps the ids seen so far (compactly)."""

    def __init__(
        self,
        *,
        default_model: str,
        shard: Shard | None,
        resume: ResumeState,
        stats: RunStats,
        writer: ResultWriter,
        record_ids: RecordIds,
        expected_lines: int = 0,
    ) -> None:
        self._default_model = default_model
        self._shard = shard
        self._resume = resume
        self._stats = stats
        self._writer = writer
        self._ids = record_ids
        self._seen = IdSet(expected=expected_lines)

    def admit(self, line_no: int, raw: bytes) -> Job | None:
        """The job to run for this line, or None (other shard, done, or invalid)."""
        try:
            job = parse_job(raw, line_no, default_model=self._default_model)
        except InvalidJobError as exc:
            self._reject(exc)
            return None
        if self._shard is not None and not self._shard.holds(job.id):
            return None
        stats, resume = self._stats, self._resume
        stats.total += 1
        if not self._seen.add(job.id):
            if line_no in resume.invalid_lines:
                stats.skipped += 1
            else:
                repeat = InvalidJobError(
                    f"id {job.id!r} repeats an earlier line's id",
                    line_no=line_no,
                    job_id=None,
                )
                self._write_invalid(repeat, job_id=None)
            return None
        if job.id in resume.done:
            stats.skipped += 1
            return None
        return job

    def _reject(self, exc: InvalidJobError) -> None:
        job_id = exc.job_id
        owner = job_id if job_id is not None else f"line-{exc.line_no}"
        if self._shard is not None and not self._shard.holds(owner):
            return
        self._stats.total += 1
        if job_id is not None and not self._seen.add(job_id):
            job_id = None  # ids stay unique across the output files
        if (job_id is not None and job_id in self._resume.done) or (
            job_id is None and exc.line_no in self._resume.invalid_lines
        ):
            self._stats.skipped += 1
            return
        self._write_invalid(exc, job_id=job_id)

    def _write_invalid(self, exc: InvalidJobError, *, job_id: str | None) -> None:
        self._stats.failed += 1
        self._stats.invalid += 1
        log.warning(
            "line %d is not a valid job: %s",
            exc.line_no,
            exc.message,
            extra={"job_id": job_id, "line": exc.line_no},
        )
        self._writer.write_error(
            error_record(
                self._ids.next(), job_id, exc, metadata=None, line_no=exc.line_no
            )
        )
