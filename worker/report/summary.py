"""Run statistics, the summary file, and the exit code they imply."""

from __future__ import annotations

import logging
import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.exits import StopReason, exit_code_for

log = logging.getLogger("worker.run")

COMPLETED = "completed"
_NEXT_WHEN_COMPLETED = {
    False: "nothing: every job has an outcome",
    True: "read the errors file; fix the cause and rerun with --retry-failed",
}

_BUCKET_BASE = 1e-4
_BUCKET_GROWTH = 1.02
_BUCKETS = 900  # 0.1 ms .. ~6,000 s in 2% steps
_INV_LOG_GROWTH = 1 / math.log(_BUCKET_GROWTH)


class LatencyHistogram:
    """Latency percentiles within 2% in constant memory, whatever the job count."""

    __slots__ = ("_counts", "count", "max_s")

    def __init__(self) -> None:
        self._counts = array("Q", bytes(8 * _BUCKETS))
        self.count = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        """Record one latency."""
        if seconds <= _BUCKET_BASE:
            index = 0
        else:
            index = min(
                _BUCKETS - 1,
                1 + int(math.log(seconds / _BUCKET_BASE) * _INV_LOG_GROWTH),
            )
        self._counts[index] += 1
        self.count += 1
        self.max_s = max(self.max_s, seconds)

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0-100), or None with no samples."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                upper = _BUCKET_BASE * _BUCKET_GROWTH**index
                return min(upper, self.max_s)
        return self.max_s


@dataclass(slots=True)
class RunStats:
    """Counters one run keeps; the progress display and the summary read them."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    invalid: int = 0
    skipped: int = 0
    succeeded_before: int = 0
    failed_before: int = 0
    requests_sent: int = 0
    in_flight: int = 0
    retrying: int = 0
    input_complete: bool = False
    expected_jobs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    untrusted_usage_seen: bool = False
    # model -> [prompt tokens, completion tokens], for the run's cost
    tokens_by_model: dict[str, list[int]] = field(default_factory=dict)

    @property
    def done(self) -> int:
        """Jobs with an outcome from this run."""
        return self.succeeded + self.failed

    def expected_total(self) -> int | None:
        """Jobs this run will have when the input is read (estimated till then)."""
        if self.input_complete:
            return self.total
        return max(self.total, self.expected_jobs) if self.expected_jobs else None

    def remaining_jobs(self) -> int | None:
        """Jobs still without an outcome; None when the input's size is unknown."""
        total = self.expected_total()
        return None if total is None else max(0, total - self.done - self.skipped)

    def progress(self) -> float:
        """The share of the jobs with an outcome, 0 when unknown."""
        total = self.expected_total()
        return (self.done + self.skipped) / total if total else 0.0

    @property
    def not_attempted(self) -> int:
        """Jobs read but left without an outcome (picked up by a resume)."""
        return max(0, self.total - self.succeeded - self.failed - self.skipped)

    def add_usage(self, usage: object, model: str = "") -> int:
        """Add a response's reported usage; return its total tokens.

        The numbers come from the server, so they are not trusted: anything but
        a whole number of 0 or more counts as 0 (said once), so a negative
        total can never give back budget or pacing.
        """
        if not isinstance(usage, dict):
            return 0
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        total = usage.get("total_tokens")
        if not (type(prompt) is type(completion) is type(total) is int) or (
            min(prompt, completion, total) < 0
        ):
            prompt, completion = self._tokens(prompt), self._tokens(completion)
            total = prompt + completion if total is None else self._tokens(total)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.total_tokens += total
        if model:
            counts = self.tokens_by_model.setdefault(model, [0, 0])
            counts[0] += prompt
            counts[1] += completion
        return total

    def _tokens(self, value: object) -> int:
        if value is None:
            return 0
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if not self.untrusted_usage_seen:
            self.untrusted_usage_seen = True
            log.warning(
                "the server reported usage %r, which is not a token count; "
                "it counts as 0 for budgets and pacing",
                value,
            )
        return 0


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
        "succeeded_before": stats.succeeded_before,
        "failed_before": stats.failed_before,
        "input_complete": stats.input_complete,
        "stop_reason": COMPLETED if reason is None else reason.label,
        "message": message,
        "next_step": next_step,
        "exit_code": exit_code_for(reason, any_failed=any_failed),
        "cost": cost,
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
            "p50": _round(stats.latency.percentile(50)),
            "p95": _round(stats.latency.percentile(95)),
            "p99": _round(stats.latency.percentile(99)),
            "max": _round(stats.latency.max_s if stats.latency.count else None),
        },
        "concurrency": concurrency,
        "learned_limits": learned or {"in_flight": None, "window": None},
        "elapsed_s": round(elapsed_s, 3),
        "requests_per_s": round(stats.requests_sent / elapsed_s, 2)
        if elapsed_s > 0
        else 0.0,
        "jobs_per_s": round(stats.done / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        "files": files,
    }
