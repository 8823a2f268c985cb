"""Answers reused instead of paid for again, as the run's hooks (hooks.py).

- `--cache PATH`: a job whose request an earlier run (of any file) already had
  answered is written from the cache, sending nothing and costing nothing; each
  new answer is kept there for later runs.
- `--dedupe`: jobs that ask the same request (one fingerprint) are sent once.
  The first job of a fingerprint leads; the others follow it without a request
  of their own. When the leader's outcome is written, each follower gets a
  record with the same `response` (or the same error) and `deduplicated_from`
  naming the leader; tokens and cost count once. A bounded memory of settled
  outcomes serves duplicates that arrive later; one further back is sent
  again. A leader left unwritten by a stop leaves its followers unwritten too,
  for a resume.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from worker.domain.answer import Answer
from worker.domain.job import Job
from worker.files.cache import AnswerCache
from worker.files.records import NO_EFFORT, Outcome, Recorder
from worker.report.tally import Tally

REMEMBERED = 10_000  # settled outcomes kept for later duplicates
CACHED: Mapping[str, object] = {"cached": True}


class CachedAnswers:
    """The answer cache as a job hook (`reuse`) and an outcome hook (`keep`);
    `describe` says what a reused answer's record adds (its parsed JSON)."""

    def __init__(
        self,
        cache: AnswerCache,
        recorder: Recorder,
        tally: Tally,
        describe: Callable[[Job, Answer], Mapping[str, object]],
    ) -> None:
        self._cache = cache
        self._recorder = recorder
        self._tally = tally
        self._describe = describe

    def reuse(self, job: Job) -> bool:
        """Write the job's cached answer, if the cache has one.

        Raises:
            OutputError: the results file cannot be written.
        """
        answer = self._cache.get(job.fingerprint)
        if answer is None:
            self._tally.cache_miss()
            return False
        extra = {**self._describe(job, answer), **CACHED}
        self._recorder.answer(job, answer, NO_EFFORT, extra=extra)
        self._tally.cache_hit()
        return True

    def keep(self, job: Job, outcome: Outcome) -> None:
        """Keep a new answer for later runs (failures are not kept)."""
        if outcome.answer is not None:
            self._cache.put(job.fingerprint, outcome.answer)


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
        tally, leader = self._tally, outcome.leader
        if outcome.answer is not None:
            self._recorder.answer(
                job,
                outcome.answer,
                NO_EFFORT,
                deduplicated_from=leader,
                extra=outcome.extra,
            )
            tally.succeeded()
        else:
            assert outcome.error is not None
            self._recorder.failure(
                job,
                outcome.error,
                NO_EFFORT,
                deduplicated_from=leader,
                extra=outcome.extra,
            )
            tally.failed(outcome.error.code)
        tally.deduplicated()
