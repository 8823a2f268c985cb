"""The summary file's content (CONTRACT section 5), built from the run's counts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TextIO

import orjson

from worker.exits import StopReason, exit_code_for
from worker.files.outputs import atomic_write
from worker.logs import emit, scrub_bytes
from worker.report.render import render_summary
from worker.report.stats import RunStats

log = logging.getLogger("worker.run")

COMPLETED = "completed"
_NEXT_WHEN_COMPLETED = {
    False: "nothing: every job has an outcome",
    True: "read the errors file; fix the cause and rerun with --retry-failed",
}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def build_summary(
    stats: RunStats,
    *,
    reason: StopReason | None,
    message: str | None,
    elapsed_s: float,
    files: dict[str, str],
    concurrency: dict[str, int],
    learned: dict[str, Any] | None = None,
    cost: dict[str, Any] | None = None,
    account: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary file's content (CONTRACT section 5)."""
    counts = {
        "total": stats.total,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "not_attempted": stats.not_attempted,
    }
    any_failed = stats.failed + stats.failed_before > 0
    next_step = _NEXT_WHEN_COMPLETED[any_failed] if reason is None else reason.next_step
    return {
        **counts,
        "counts": counts,
        "invalid": stats.invalid,
        "jobs_with_system_messages": stats.jobs_with_system,
        "deduplicated": stats.deduplicated,
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.cache_misses,
        "succeeded_before": stats.succeeded_before,
        "failed_before": stats.failed_before,
        "input_complete": stats.input_complete,
        "stop_reason": COMPLETED if reason is None else reason.label,
        "message": message,
        "next_step": next_step,
        "exit_code": exit_code_for(reason, any_failed=any_failed),
        "cost": cost,
        **_traffic(stats),
        "concurrency": concurrency,
        "learned_limits": learned or {"in_flight": None, "window": None},
        **(account or {}),
        **_rates(stats, elapsed_s),
        "files": files,
    }


def _traffic(stats: RunStats) -> dict[str, Any]:
    """Tokens, requests, retries and latency."""
    latency = stats.latency
    return {
        "tokens": {
            "prompt": stats.prompt_tokens,
            "completion": stats.completion_tokens,
            "total": stats.total_tokens,
        },
        "requests": {
            "sent": stats.requests_sent,
            "by_status": {str(k): v for k, v in sorted(stats.statuses.items())},
        },
        "retries": {"total": sum(stats.retries.values()), **dict(stats.retries)},
        "latency_s": {
            "p50": _round(latency.percentile(50)),
            "p95": _round(latency.percentile(95)),
            "p99": _round(latency.percentile(99)),
            "max": _round(latency.max_s if latency.count else None),
        },
    }


def _rates(stats: RunStats, elapsed_s: float) -> dict[str, Any]:
    """The run's length and how fast it went."""
    return {
        "elapsed_s": round(elapsed_s, 3),
        "requests_per_s": round(stats.requests_sent / elapsed_s, 2)
        if elapsed_s > 0
        else 0.0,
        "jobs_per_s": round(stats.done / elapsed_s, 2) if elapsed_s > 0 else 0.0,
    }


def _columns(out: TextIO) -> int | None:
    """The terminal's width, when `out` is one."""
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None


def write_summary(
    summary: dict[str, Any], path: Path, out: TextIO, *, log_format: str
) -> int:
    """Write the summary file and show it (a table, or one JSON log line without
    the timeline); return the exit code: 7 when the file could not be written."""
    document = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
    try:
        atomic_write(path, scrub_bytes(document))
    except OSError as exc:
        log.error("could not write the summary %s: %s", path, exc.strerror)
        summary["exit_code"] = StopReason.OUTPUT_FAILED.exit_code
    if log_format == "json":
        # Log collectors get the summary as one JSON line like every other.
        shown = {k: v for k, v in summary.items() if k != "timeline"}
        log.info(
            "run finished: %s",
            summary["stop_reason"],
            extra={"stop_reason": summary["stop_reason"], "summary": shown},
        )
    else:
        emit(out, render_summary(summary, _columns(out)))
    code: int = summary["exit_code"]
    return code
