"""Extensions listen to jobs and outcomes through lists of hooks, as httpx's
`event_hooks` do, so the run loop knows none of them by name.

- `job` hooks see each job the reader admits, before it is queued; a hook that
  gives the job its outcome itself (an answer from the cache, a request another
  job already asks) returns True, and nothing is sent for it.
- `outcome` hooks see each job's outcome once its record is written (the cache
  keeps the answer; the jobs that asked the same request get theirs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.domain.job import Job
from worker.files.records import Outcome

JobHook = Callable[[Job], bool]
OutcomeHook = Callable[[Job, Outcome], None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The hooks of one run, called in order."""

    job: Sequence[JobHook] = ()
    outcome: Sequence[OutcomeHook] = ()

    def settled_elsewhere(self, job: Job) -> bool:
        """True when a job hook gave `job` its outcome (nothing to send).

        Raises:
            OutputError: a hook's record could not be written.
        """
        return any(hook(job) for hook in self.job)

    def settled(self, job: Job, outcome: Outcome) -> None:
        """`job`'s outcome was written.

        Raises:
            OutputError: a hook's record could not be written.
        """
        for hook in self.outcome:
            hook(job, outcome)
