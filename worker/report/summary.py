"""The run summary built from the run's counts (CONTRACT section 5), and shown:
a table for people, or one JSON log line for log collectors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from worker.domain.day import DayWait
from worker.domain.refusal import DAILY_MESSAGE_KINDS, daily_cap_times
from worker.domain.summary import (
    COMPLETED,
    Concurrency,
    Cost,
    Counts,
    DailyCap,
    Latency,
    Learned,
    Requests,
    RunSummary,
    Timeline,
    Tokens,
    Wait,
)
from worker.exits import StopReason, exit_code_for
from worker.logs import emit
from worker.report.render import render_summary
from worker.report.stats import RunStats

log = logging.getLogger("worker.run")

_NEXT_WHEN_COMPLETED = {
    False: "nothing: every job has an outcome",
    True: "read the errors file; fix the cause and rerun with --retry-failed",
}


@dataclass(frozen=True, slots=True)
class Ending:
    """How the run ended: why it stopped (None: it completed), when, and the
    requests its stop cancelled in flight."""

    reason: StopReason | None = None
    message: str | None = None
    at: datetime | None = None
    abandoned: int = 0


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def summarize(
    stats: RunStats,
    *,
    ending: Ending,
    elapsed_s: float,
    files: dict[str, str],
    concurrency: Concurrency,
    learned: Learned,
    cost: Cost,
    timeline: Timeline,
    waits: Sequence[DayWait] = (),
    daily_messages_left: int | None = None,
    key_rotations: int = 0,
) -> RunSummary:
    """The summary of one run."""
    reason = ending.reason
    any_failed = stats.failed + stats.failed_before > 0
    daily_cap = None
    if reason is StopReason.DAILY_CAP and ending.at is not None:
        daily_cap = DailyCap(**daily_cap_times(ending.at))
    latency = stats.latency
    refusals = dict(stats.refusals)
    return RunSummary(
        counts=Counts(
            total=stats.total,
            succeeded=stats.succeeded,
            failed=stats.failed,
            skipped=stats.skipped,
            not_attempted=stats.not_attempted,
        ),
        invalid=stats.invalid,
        jobs_with_system_messages=stats.jobs_with_system,
        deduplicated=stats.deduplicated,
        reasks=stats.reasks,
        invalid_output=stats.invalid_output,
        truncated=stats.truncated,
        cache_hits=stats.cache_hits,
        cache_misses=stats.cache_misses,
        succeeded_before=stats.succeeded_before,
        failed_before=stats.failed_before,
        input_complete=stats.input_complete,
        stop_reason=COMPLETED if reason is None else reason.label,
        message=ending.message,
        next_step=_NEXT_WHEN_COMPLETED[any_failed]
        if reason is None
        else reason.next_step,
        exit_code=exit_code_for(reason, any_failed=any_failed),
        cost=cost,
        tokens=Tokens(
            prompt=stats.prompt_tokens,
            completion=stats.completion_tokens,
            total=stats.total_tokens,
        ),
        requests=Requests(
            sent=stats.requests_sent,
            by_status={str(k): v for k, v in sorted(stats.statuses.items())},
        ),
        retries={"total": sum(stats.retries.values()), **stats.retries},
        latency_s=Latency(
            p50=_round(latency.percentile(50)),
            p95=_round(latency.percentile(95)),
            p99=_round(latency.percentile(99)),
            max=_round(latency.max_s if latency.count else None),
        ),
        concurrency=concurrency,
        learned_limits=learned,
        refusals=refusals,
        daily_messages_on_refusals=sum(refusals[k] for k in DAILY_MESSAGE_KINDS),
        messages_per_answer=round(stats.requests_sent / stats.succeeded, 3)
        if stats.succeeded
        else None,
        slots_left_held=ending.abandoned,
        daily_cap=daily_cap,
        waits=[
            Wait(reason=w.reason, since=w.since.isoformat(), until=w.until.isoformat())
            for w in waits
        ],
        daily_messages_left=daily_messages_left,
        key_rotations=key_rotations,
        elapsed_s=round(elapsed_s, 3),
        requests_per_s=round(stats.requests_sent / elapsed_s, 2)
        if elapsed_s > 0
        else 0.0,
        jobs_per_s=round(stats.done / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        files=files,
        timeline=timeline,
    )


def _columns(out: TextIO) -> int | None:
    """The terminal's width, when `out` is one."""
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None


def show_summary(summary: RunSummary, out: TextIO, *, log_format: str) -> None:
    """The summary for people (a table on `out`), or for log collectors (one
    JSON log line, without the timeline)."""
    if log_format == "json":
        log.info(
            "run finished: %s",
            summary.stop_reason,
            extra={
                "stop_reason": summary.stop_reason,
                "summary": summary.to_json(timeline=False),
            },
        )
    else:
        emit(out, render_summary(summary, _columns(out)))
