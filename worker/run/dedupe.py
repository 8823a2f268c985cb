"""`--dedupe`: jobs that ask the same request (one fingerprint) are sent once.

The first job of a fingerprint leads; the others follow it without a request
of their own. When the leader's outcome is written, each follower gets a record
with the same `response` (or the same error) and `deduplicated_from` naming the
leader; tokens and cost count once. A bounded memory of settled outcomes serves
duplicates that arrive later; one further back is sent again. A leader left
unwritten by a stop leaves its followers unwritten too, for a resume.
"""

from __future__ import annotations

from collections import OrderedDict

from worker.files.jobs import Job
from worker.files.records import Outcome, Recorder
from worker.report.tally import Tally

REMEMBERED = 10_000  # settled outcomes kept for later duplicates


class Dedupe:
    """Leaders, their waiting followers, and recently settled outcomes."""

    def __init__(self, recorder: Recorder, tally: Tally) -> None:
        self._recorder = recorder
        self._tally = tally
        self._waiting: dict[str, list[Job]] = {}  # leader's fingerprint -> followers
        self._settled: OrderedDict[str, Outcome] = OrderedDict()

    def follows(self, job: Job) -> bool:
        """True when `job` needs no request: its outcome comes from a leader.

        Raises:
            OutputError: a follower's record could not be written.
        """
        fingerprint = job.fingerprint
        if (followers := self._waiting.get(fingerprint)) is not None:
            followers.append(job)
            return True
        if (outcome := self._settled.get(fingerprint)) is not None:
            self._settled.move_to_end(fingerprint)
            self._write(job, outcome)
            return True
        self._waiting[fingerprint] = []  # this job leads
        return False

    def settled(self, job: Job, outcome: Outcome) -> None:
        """The leader `job`'s outcome was written: its followers get theirs.

        Raises:
            OutputError: a follower's record could not be written.
        """
        followers = self._waiting.pop(job.fingerprint, [])
        self._settled[job.fingerprint] = outcome
        if len(self._settled) > REMEMBERED:
            self._settled.popitem(last=False)
        for follower in followers:
            self._write(follower, outcome)

    def _write(self, job: Job, outcome: Outcome) -> None:
        tally = self._tally
        if outcome.answer is not None:
            self._recorder.answer(
                job.id,
                outcome.answer,
                attempts=0,  # no request of its own
                latency_s=0.0,
                metadata=job.metadata,
                fingerprint=job.fingerprint,
                deduplicated_from=outcome.leader,
            )
            tally.succeeded()
        else:
            assert outcome.error is not None
            self._recorder.failure(
                job.id,
                outcome.error,
                metadata=job.metadata,
                fingerprint=job.fingerprint,
                deduplicated_from=outcome.leader,
            )
            tally.failed()
        tally.deduplicated()
