"""The run loop wired from the run's parts: reader, workers, retry, supervisor."""

from __future__ import annotations

from typing import BinaryIO

from worker.api.client import Client
from worker.app.parts import RunParts
from worker.files.jobs import Shard
from worker.files.resume import ResumeState
from worker.run.crew import Crew
from worker.run.dedupe import Dedupe
from worker.run.pipeline import Permit, Pipeline
from worker.run.reader import make_intake
from worker.run.retry import RetryPolicy
from worker.run.sender import Crewmates, Sender


def build_pipeline(
    parts: RunParts,
    source: BinaryIO,
    client: Client,
    *,
    resume: ResumeState,
    shard: Shard | None,
) -> Pipeline:
    """The reader and the workers, wired to the run's shared parts."""
    settings, crew = parts.settings, Crew()
    dedupe = Dedupe(parts.recorder, parts.tally) if settings.dedupe else None
    intake = make_intake(
        source,
        default_model=settings.model,
        shard=shard,
        resume=resume,
        tally=parts.tally,
        recorder=parts.recorder,
        system_as_user=settings.system_as_user,
        dedupe=dedupe,
        redo_changed=settings.redo_changed,
    )
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
        may_send=Permit(parts.stop, parts.tally.stats, settings.token_budget),
        max_consecutive_failures=settings.max_consecutive_failures,
        stream=settings.stream,
        settle=None if dedupe is None else dedupe.settled,
    )
    return Pipeline(
        intake=intake,
        sender=Sender(mates),
        crew=crew,
        stop=parts.stop,
        concurrency=settings.concurrency,
        deadline_s=settings.deadline_s,
        grace_s=settings.shutdown_grace_s,
    )
