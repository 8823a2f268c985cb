"""The run's counts, as readers see them: the summary, the display, the metrics.

Only the tally (tally.py) changes them.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

from worker.domain.refusal import REFUSAL_KINDS

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

    def counts(self) -> array[int]:
        """A copy of the counts per bucket (see `upper_edge_s`)."""
        return array("Q", self._counts)

    @staticmethod
    def upper_edge_s(index: int) -> float:
        """The longest latency bucket `index` holds."""
        return _BUCKET_BASE * _BUCKET_GROWTH**index

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0-100), or None with no samples."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return min(self.upper_edge_s(index), self.max_s)
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
    # requests answered 429, by what the refusal meant (domain/refusal.py)
    refusals: Counter[str] = field(
        default_factory=lambda: Counter(dict.fromkeys(REFUSAL_KINDS, 0))
    )
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    untrusted_usage_seen: bool = False
    jobs_with_system: int = 0
    deduplicated: int = 0
    reasks: int = 0  # requests that asked again for usable JSON
    invalid_output: int = 0  # jobs failed for it, after the last re-ask
    truncated: int = 0  # answers cut at max_tokens
    cache_hits: int = 0
    cache_misses: int = 0
    # model -> [prompt tokens, completion tokens], for the run's cost
    tokens_by_model: dict[str, list[int]] = field(default_factory=dict)
    # model -> kopecks, each answer priced as it came (models with a price)
    kopecks_by_model: dict[str, float] = field(default_factory=dict)
    kopecks: float = 0.0  # their sum

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
