"""Extensions listen to jobs, answers and outcomes through lists of hooks, as
httpx's `event_hooks` do, so the run loop knows none of them by name.

- `job` hooks see each job the reader admits, before it is queued; a hook that
  gives the job its outcome itself (an answer from the cache, a request another
  job already asks) returns True, and nothing is sent for it.
- `answer` hooks see each answer before it is written, and may say what to do
  with it instead of writing it as it is: write it with more in its record,
  ask again, or fail the job (the answer checks of checks.py).
- `outcome` hooks see each job's outcome once its record is written (the cache
  keeps the answer; the jobs that asked the same request get theirs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from worker.domain.answer import Answer
from worker.domain.job import Job
from worker.errors import JobError
from worker.files.records import Outcome


@dataclass(slots=True)
class Conversation:
    """One job's exchange so far: what the next request sends, how often its
    answer was asked for again, and whether max_tokens was widened."""

    job: Job
    payload: bytes
    reasks: int = 0
    widened: bool = False

    @classmethod
    def of(cls, job: Job) -> Conversation:
        """The exchange a job starts with: its request as the line asked it."""
        return cls(job, job.payload)


@dataclass(frozen=True, slots=True)
class Accept:
    """The answer is written, with these keys added to its record."""

    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AskAgain:
    """The job's next request: the conversation gone on, or widened."""

    payload: bytes
    reask: bool  # a re-ask for a usable answer (else max_tokens widened)


@dataclass(frozen=True, slots=True)
class Reject:
    """The job fails with this error, the last answer kept in its record."""

    error: JobError
    extra: Mapping[str, object] = field(default_factory=dict)


Verdict = Accept | AskAgain | Reject
JobHook = Callable[[Job], bool]
AnswerHook = Callable[[Conversation, Answer], Verdict | None]
OutcomeHook = Callable[[Job, Outcome], None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The hooks of one run, called in order."""

    job: Sequence[JobHook] = ()
    answer: Sequence[AnswerHook] = ()
    outcome: Sequence[OutcomeHook] = ()

    def settled_elsewhere(self, job: Job) -> bool:
        """True when a job hook gave `job` its outcome (nothing to send).

        Raises:
            OutputError: a hook's record could not be written.
        """
        return any(hook(job) for hook in self.job)

    def judged(self, talk: Conversation, answer: Answer) -> Verdict | None:
        """The first answer hook's say on `answer` (None: write it as it is)."""
        for hook in self.answer:
            if (verdict := hook(talk, answer)) is not None:
                return verdict
        return None

    def settled(self, job: Job, outcome: Outcome) -> None:
        """`job`'s outcome was written.

        Raises:
            OutputError: a hook's record could not be written.
        """
        for hook in self.outcome:
            hook(job, outcome)
