"""One run built from its settings: the writer, the counts, the stop, the flow
control, the hooks, the reader and the workers, and what reports on them.
The command (run.py) drives what this builds; nothing else wires a run."""

from __future__ import annotations

from dataclasses import dataclass

from worker.api.client import Client
from worker.api.keys import KeyRing
from worker.app.extensions import extensions
from worker.app.flow import Time, build_throttle
from worker.app.prepare import Prepared
from worker.config import Settings
from worker.domain.prices import PriceBook
from worker.files.outputs import RunFiles
from worker.files.records import Recorder
from worker.files.writer import ResultWriter
from worker.report.live import LiveReport
from worker.report.tally import Tally
from worker.run.ask import Asker
from worker.run.crew import Crew
from worker.run.pipeline import CostCap, Permit, Pipeline
from worker.run.reader import make_intake
from worker.run.retry import RetryPolicy
from worker.run.sender import Crewmates, Sender
from worker.run.stop import StopController


@dataclass(frozen=True, slots=True)
class Run:
    """A run ready to be driven."""

    settings: Settings
    tally: Tally
    stop: StopController
    writer: ResultWriter
    pipeline: Pipeline
    live: LiveReport
    client: Client
    keys: KeyRing


def build_run(
    settings: Settings,
    files: RunFiles,
    ready: Prepared,
    *,
    stop: StopController,
    keys: KeyRing,
    client: Client,
    prices: PriceBook,
    time: Time,
) -> Run:
    """Everything one run needs, with the writer open (a write error stops the
    run, exit 7).

    Raises:
        ConfigError: an output file cannot be opened.
    """
    tally = Tally(prices=prices)
    tally.resumed(succeeded=ready.resume.succeeded, failed=ready.resume.failed)
    writer = ResultWriter(
        files.results,
        files.errors,
        on_failure=stop.cannot_write,
    )
    writer.open()
    recorder = Recorder(writer)
    throttle = build_throttle(
        settings, files, ready, keys=keys, stats=tally.stats, time=time
    )
    live = LiveReport(
        settings, tally.stats, throttle, lambda: tally.prices, stem=files.stem
    )
    hooks = extensions(settings, ready.cache, recorder, tally)
    crew = Crew()
    asker = Asker(
        client=client,
        throttle=throttle,
        policy=RetryPolicy(
            settings.max_attempts,
            sleep=time.sleep,
            max_retry_after_s=settings.max_retry_after_s,
        ),
        tally=tally,
        crew=crew,
        permit=_permit(settings, stop, tally, live),
        keys=keys,
        stream=settings.stream,
    )
    sender = Sender(
        Crewmates(
            asker=asker,
            recorder=recorder,
            tally=tally,
            stop=stop,
            hooks=hooks,
            max_consecutive_failures=settings.max_consecutive_failures,
        )
    )
    intake = make_intake(
        ready.source,
        shard=files.shard,
        resume=ready.resume,
        tally=tally,
        recorder=recorder,
        hooks=hooks,
        redo_changed=settings.redo_changed,
    )
    pipeline = Pipeline(
        intake=intake,
        sender=sender,
        crew=crew,
        stop=stop,
        concurrency=settings.concurrency,
        deadline_s=settings.deadline_s,
        grace_s=settings.shutdown_grace_s,
    )
    return Run(settings, tally, stop, writer, pipeline, live, client, keys)


def _permit(
    settings: Settings, stop: StopController, tally: Tally, live: LiveReport
) -> Permit:
    """The supervisor's say before each send: the token budget and --max-cost."""
    cost_cap = None
    if settings.max_cost_rub is not None:
        cost_cap = CostCap(
            settings.max_cost_rub, spent=live.spent_rub, prices=lambda: tally.prices
        )
    return Permit(stop, tally.stats, settings.token_budget, cost_cap)
