"""The run over time, in bounded memory: at most MAX_POINTS samples, however
long the run. When they fill up every other one goes and the step doubles, so a
night's run and a minute's keep the same number of points.

Each sample holds running totals (and the latency histogram's), so dropping one
loses no count: the interval after it simply spans both.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from worker.report.stats import LatencyHistogram, RunStats

MAX_POINTS = 240
FIRST_STEP_S = 0.25
# Latency buckets of the timeline: 8 of the histogram's 2% steps, about 17%.
LATENCY_GROUP = 8
TOTALS = ("succeeded", "failed", "sent", "retries", "cost_rub")


@dataclass(frozen=True, slots=True)
class Gauges:
    """What the run looks like right now, beside its counts."""

    in_flight: int
    cap: int
    refusals: dict[str, int]  # running totals, by kind
    cost_rub: float


class Timeline:
    """Samples of a run's totals, thinned to stay under MAX_POINTS."""

    __slots__ = ("_hists", "_kinds", "_peaks", "_pending", "_rows", "step_s")

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.step_s = FIRST_STEP_S
        self._kinds = kinds
        self._rows: list[tuple[float, ...]] = []
        self._hists: list[array[int]] = []
        self._peaks: list[int] = []  # the most in flight since the sample before
        self._pending = 0  # the most in flight since the last sample

    def __len__(self) -> int:
        return len(self._rows)

    def due(self, elapsed_s: float) -> bool:
        """Whether a sample is due (one step after the last)."""
        return not self._rows or elapsed_s >= self._rows[-1][0] + self.step_s

    def sample(self, elapsed_s: float, stats: RunStats, gauges: Gauges) -> None:
        """Record the run at `elapsed_s` seconds; the in-flight peak is the
        largest seen since the last sample that is kept."""
        row = (
            elapsed_s,
            stats.succeeded,
            stats.failed,
            stats.requests_sent,
            sum(stats.retries.values()),
            gauges.cost_rub,
            gauges.cap,
            *(gauges.refusals.get(kind, 0) for kind in self._kinds),
        )
        self._rows.append(row)
        self._hists.append(_coarse(stats.latency))
        self._peaks.append(max(self._pending, gauges.in_flight))
        self._pending = gauges.in_flight
        if len(self._rows) > MAX_POINTS:
            self._thin()

    def peak(self, in_flight: int) -> None:
        """In flight between samples, so a short burst shows."""
        self._pending = max(self._pending, in_flight)

    def _thin(self) -> None:
        """Keep the first sample and every other one after it; double the step."""
        last = len(self._rows) - 1
        keep = [i for i in range(last + 1) if i % 2 == 0 or i == last]
        # A kept sample's peak covers every interval since the one kept before.
        peaks = [
            max(self._peaks[after + 1 : i + 1])
            for after, i in zip([-1, *keep], keep, strict=False)
        ]
        self._rows = [self._rows[i] for i in keep]
        self._hists = [self._hists[i] for i in keep]
        self._peaks = peaks
        self.step_s *= 2

    def export(self) -> dict[str, Any]:
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
        rows = [self._interval(i) for i in range(1, len(self._rows))]
        return {"step_s": self.step_s, "columns": columns, "rows": rows}

    def _interval(self, i: int) -> list[float | None]:
        now, before = self._rows[i], self._rows[i - 1]
        span_s = max(now[0] - before[0], 1e-9)
        fixed = len(TOTALS) + 2
        refused = [now[k] - before[k] for k in range(fixed, len(now))]
        latencies = [
            a - b for a, b in zip(self._hists[i], self._hists[i - 1], strict=True)
        ]
        return [
            round(now[0], 3),
            round((now[1] - before[1]) / span_s, 3),
            now[2] - before[2],
            now[4] - before[4],
            *refused,
            self._peaks[i],
            now[6],
            _percentile(latencies, 50),
            _percentile(latencies, 95),
            round(now[5], 6),
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
