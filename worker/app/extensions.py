"""A run's extensions, as its settings ask for them: the answer cache, dedupe
and the answer check (truncation, schemas), each listening through the run's
hooks (run/hooks.py), in the order they must hear."""

from __future__ import annotations

from worker.config import Settings
from worker.files.cache import AnswerCache
from worker.files.records import Recorder
from worker.report.tally import Tally
from worker.run.checks import AnswerCheck
from worker.run.hooks import Hooks, JobHook, OutcomeHook
from worker.run.reuse import CachedAnswers, Dedupe


def extensions(
    settings: Settings, cache: AnswerCache | None, recorder: Recorder, tally: Tally
) -> Hooks:
    """The extensions this run's settings ask for, in the order they listen:
    the cache before dedupe for a new job, the answer check (truncation and
    schemas) on every answer, dedupe before the cache for an outcome
    (followers get theirs first)."""
    job_hooks: list[JobHook] = []
    outcome_hooks: list[OutcomeHook] = []
    check = AnswerCheck(
        max_reasks=settings.max_reasks, on_truncated=settings.on_truncated, tally=tally
    )
    cached = None
    if cache is not None:
        cached = CachedAnswers(cache, recorder, tally, check.as_is)
        job_hooks.append(cached.reuse)
    if settings.dedupe:
        dedupe = Dedupe(recorder, tally)
        job_hooks.append(dedupe.follows)
        outcome_hooks.append(dedupe.settled)
    if cached is not None:
        outcome_hooks.append(cached.keep)
    return Hooks(job=job_hooks, answer=[check], outcome=outcome_hooks)
