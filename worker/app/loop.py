"""The run loop wired from the run's parts: reader, workers, retry, supervisor."""

from __future__ import annotations

from collections.abc import Callable

from worker.api.client import Client
from worker.app.parts import RunParts
from worker.app.prepare import Prepared
from worker.files.jobs import Job, Shard
from worker.run.crew import Crew
from worker.run.dedupe import Dedupe
from worker.run.pipeline import CostCap, Permit, Pipeline
from worker.run.reader import Intake, make_intake
from worker.run.retry import RetryPolicy
from worker.run.sender import Crewmates, Sender


def build_pipeline(
    parts: RunParts,
    ready: Prepared,
    client: Client,
    *,
    shard: Shard | None,
    spent: Callable[[], float],
    estimate: Callable[[Job], float],
) -> Pipeline:
    """The reader and the workers, wired to the run's shared parts; `spent` and
    `estimate` are what the run and a job cost, for --max-cost."""
    settings, crew = parts.settings, Crew()
    dedupe = Dedupe(parts.recorder, parts.tally) if settings.dedupe else None
    policy = RetryPolicy(
        settings.max_attempts,
        sleep=parts.sleep,
        gate=parts.throttle.gate,
        max_retry_after_s=settings.max_retry_after_s,
    )
    mates = Crewmates(
        client=client,
        throttle=parts.throttle,
        policy=policy,
        recorder=parts.recorder,
        tally=parts.tally,
        stop=parts.stop,
        crew=crew,
        permit=Permit(
            parts.stop,
            parts.tally.stats,
            settings.token_budget,
            None
            if settings.max_cost_rub is None
            else CostCap(settings.max_cost_rub, spent=spent, estimate=estimate),
        ),
        max_consecutive_failures=settings.max_consecutive_failures,
        stream=settings.stream,
        settle=None if dedupe is None else dedupe.settled,
        remember=None if ready.cache is None else ready.cache.put,
    )
    return Pipeline(
        intake=_intake(parts, ready, shard, dedupe),
        sender=Sender(mates),
        crew=crew,
        stop=parts.stop,
        concurrency=settings.concurrency,
        deadline_s=settings.deadline_s,
        grace_s=settings.shutdown_grace_s,
    )


def _intake(
    parts: RunParts, ready: Prepared, shard: Shard | None, dedupe: Dedupe | None
) -> Intake:
    """The reader's side: what is done, changed, cached or a duplicate."""
    settings = parts.settings
    return make_intake(
        ready.source,
        default_model=settings.model,
        shard=shard,
        resume=ready.resume,
        tally=parts.tally,
        recorder=parts.recorder,
        system_as_user=settings.system_as_user,
        dedupe=dedupe,
        redo_changed=settings.redo_changed,
        cache=ready.cache,
    )
