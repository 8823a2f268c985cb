"""The run over time, in bounded memory: at most MAX_POINTS samples, however
long the run. When they fill up every other one goes and the step doubles, so a
night's run and a minute's keep the same number of points.

Each sample holds running totals (and the latency histogram's), so dropping one
loses no count: the interval after it simply spans both.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass
from typing import NamedTuple

from worker.domain.summary import Timeline
from worker.report.stats import LatencyHistogram, RunStats

MAX_POINTS = 240
FIRST_STEP_S = 0.25
# Latency buckets of the timeline: 8 of the histogram's 2% steps, about 17%.
LATENCY_GROUP = 8


class Sample(NamedTuple):
    """The run at one instant: running totals, the cap, and the most in flight
    since the sample before."""

    t_s: float
    succeeded: int
    failed: int
    retries: int
    cost_rub: float
    cap: int
    refused: tuple[int, ...]  # running totals, by kind
    latency: array[int]  # the running latency histogram, coarse
    peak: int


@dataclass(frozen=True, slots=True)
class Gauges:
    """What the run looks like right now, beside its counts."""

    in_flight: int
    cap: int
    refusals: dict[str, int]  # running totals, by kind
    cost_rub: float


class TimelineSampler:
    """Samples of a run's totals, thinned to stay under MAX_POINTS."""

    __slots__ = ("_kinds", "_pending", "_samples", "step_s")

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.step_s = FIRST_STEP_S
        self._kinds = kinds
        self._samples: list[Sample] = []
        self._pending = 0  # the most in flight since the last sample

    def __len__(self) -> int:
        return len(self._samples)

    def due(self, elapsed_s: float) -> bool:
        """Whether a sample is due (one step after the last)."""
        return not self._samples or elapsed_s >= self._samples[-1].t_s + self.step_s

    def sample(self, elapsed_s: float, stats: RunStats, gauges: Gauges) -> None:
        """Record the run at `elapsed_s` seconds; the in-flight peak is the
        largest seen since the last sample that is kept."""
        self._samples.append(
            Sample(
                t_s=elapsed_s,
                succeeded=stats.succeeded,
                failed=stats.failed,
                retries=sum(stats.retries.values()),
                cost_rub=gauges.cost_rub,
                cap=gauges.cap,
                refused=tuple(gauges.refusals.get(kind, 0) for kind in self._kinds),
                latency=_coarse(stats.latency),
                peak=max(self._pending, gauges.in_flight),
            )
        )
        self._pending = gauges.in_flight
        if len(self._samples) > MAX_POINTS:
            self._thin()

    def peak(self, in_flight: int) -> None:
        """In flight between samples, so a short burst shows."""
        self._pending = max(self._pending, in_flight)

    def _thin(self) -> None:
        """Keep the first sample and every other one after it; double the step."""
        samples = self._samples
        last = len(samples) - 1
        keep = [i for i in range(last + 1) if i % 2 == 0 or i == last]
        # A kept sample's peak covers every interval since the one kept before.
        self._samples = [
            samples[i]._replace(peak=max(s.peak for s in samples[after + 1 : i + 1]))
            for after, i in zip([-1, *keep], keep, strict=False)
        ]
        self.step_s *= 2

    def export(self) -> Timeline:
        """Per interval: its end, answers per second, failures, retries, 429s
        by kind, in flight at most, the cap, latency p50/p95 and the cost so far."""
        columns = [
            "t_s",
            "answers_per_s",
            "failed",
            "retries",
            *(f"refused_{kind}" for kind in self._kinds),
            "in_flight",
            "cap",
            "latency_p50_s",
            "latency_p95_s",
            "cost_rub",
        ]
        rows = [
            _interval(before, now) for before, now in itertools.pairwise(self._samples)
        ]
        return Timeline(step_s=self.step_s, columns=columns, rows=rows)


def _interval(before: Sample, now: Sample) -> list[float | None]:
    """One exported row: what happened between two samples."""
    span_s = max(now.t_s - before.t_s, 1e-9)
    latencies = [a - b for a, b in zip(now.latency, before.latency, strict=True)]
    return [
        round(now.t_s, 3),
        round((now.succeeded - before.succeeded) / span_s, 3),
        now.failed - before.failed,
        now.retries - before.retries,
        *(a - b for a, b in zip(now.refused, before.refused, strict=True)),
        now.peak,
        now.cap,
        _percentile(latencies, 50),
        _percentile(latencies, 95),
        round(now.cost_rub, 6),
    ]


def _coarse(histogram: LatencyHistogram) -> array[int]:
    """The latency histogram's running counts in wider buckets."""
    counts = histogram.counts()
    return array(
        "Q",
        (
            sum(counts[i : i + LATENCY_GROUP])
            for i in range(0, len(counts), LATENCY_GROUP)
        ),
    )


def _percentile(counts: list[int], p: float) -> float | None:
    """The p-th percentile of one interval's latencies (the bucket's upper edge)."""
    total = sum(counts)
    if not total:
        return None
    rank = total * p / 100
    seen = 0
    for index, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return round(
                LatencyHistogram.upper_edge_s((index + 1) * LATENCY_GROUP - 1), 4
            )
    return None
