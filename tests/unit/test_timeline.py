"""The timeline keeps a fixed number of points for any run, and loses no count."""

from __future__ import annotations

import itertools

from worker.report.stats import RunStats
from worker.report.timeline import MAX_POINTS, Gauges, TimelineSampler

KINDS = ("in_flight", "window")


def gauges(in_flight: int = 0, refused: int = 0, cost: float = 0.0) -> Gauges:
    return Gauges(in_flight, 3, {"in_flight": refused, "window": 0}, cost)


def test_a_million_job_run_keeps_a_fixed_number_of_points() -> None:
    timeline, stats = TimelineSampler(KINDS), RunStats()
    timeline.sample(0.0, stats, gauges())
    samples = 0
    for second in range(1, 200_000):  # 55 hours at one answer every ~0.2 s
        stats.succeeded += 5
        stats.latency.add(0.2 + (second % 7) / 10)
        if timeline.due(float(second)):
            timeline.sample(float(second), stats, gauges(refused=second // 1000))
            samples += 1
    assert len(timeline) <= MAX_POINTS
    assert samples > MAX_POINTS  # it thinned, and kept sampling
    exported = timeline.export()
    rows = [[0.0 if v is None else v for v in row] for row in exported.rows]
    assert len(rows) == len(timeline) - 1
    t = exported.columns.index("t_s")
    rate = exported.columns.index("answers_per_s")
    refused = exported.columns.index("refused_in_flight")
    spans = [rows[0][t], *(b[t] - a[t] for a, b in itertools.pairwise(rows))]
    # Dropping samples loses no answer and no refusal: the intervals add up.
    answered = sum(r[rate] * span for r, span in zip(rows, spans, strict=True))
    last_t = rows[-1][t]
    assert round(answered) == stats.succeeded - 5 * (199_999 - int(last_t))
    assert sum(r[refused] for r in rows) == int(last_t) // 1000
    p50 = exported.columns.index("latency_p50_s")
    assert all(0.2 <= r[p50] <= 1.0 for r in rows)


def test_a_burst_between_samples_shows_as_the_intervals_peak() -> None:
    timeline, stats = TimelineSampler(KINDS), RunStats()
    timeline.sample(0.0, stats, gauges())
    timeline.peak(9)  # a burst no sample saw
    timeline.sample(1.0, stats, gauges(in_flight=2))
    timeline.sample(2.0, stats, gauges(in_flight=1))
    exported = timeline.export()
    flight = exported.columns.index("in_flight")
    assert [r[flight] for r in exported.rows] == [9, 2]
