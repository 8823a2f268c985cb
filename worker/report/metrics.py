"""Metrics for schedulers, in Prometheus' batch-job conventions (CONTRACT section 12).

`--metrics-file` writes the node_exporter textfile collector's format, atomically,
every `--progress-interval` and at the end; `--metrics-push` pushes the same to a
Pushgateway at the end (job `mira-batch`, grouped by input stem). prometheus_client
writes the exposition format; the names are the contract's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.report.stats import RunStats

log = logging.getLogger("worker.metrics")

JOB = "mira-batch"


class RunCollector(Collector):
    """The run's counters as Prometheus metrics, read when they are written."""

    def __init__(
        self,
        stem: str,
        stats: RunStats,
        cost: Callable[[], float],
        *,
        waiting_until: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._stem = stem
        self._stats = stats
        self._cost = cost
        self._waiting_until = waiting_until
        self._started = time.monotonic()
        self.exit_code: int | None = None
        self.finished_at: float | None = None

    def collect(self) -> Iterator[Metric]:
        """Every metric, labelled with the input's stem."""
        stem, s = self._stem, self._stats
        jobs = GaugeMetricFamily(
            "mira_batch_jobs", "This run's jobs by outcome", labels=["input", "outcome"]
        )
        for outcome, count in (
            ("succeeded", s.succeeded),
            ("failed", s.failed - s.invalid),
            ("invalid", s.invalid),
            ("skipped", s.skipped),
            ("not_attempted", s.not_attempted),
        ):
            jobs.add_metric([stem, outcome], count)
        yield jobs
        yield _counter(
            "mira_batch_requests", "Answers by HTTP status", "status", s.statuses, stem
        )
        yield _counter(
            "mira_batch_retries", "Retries by cause", "cause", s.retries, stem
        )
        tokens = {"prompt": s.prompt_tokens, "completion": s.completion_tokens}
        yield _counter("mira_batch_tokens", "Tokens used", "kind", tokens, stem)
        cache = {"hit": s.cache_hits, "miss": s.cache_misses}
        yield _counter(
            "mira_batch_cache_lookups", "Answer cache lookups", "result", cache, stem
        )
        cost = CounterMetricFamily(
            "mira_batch_cost_rub", "Cost at the summary's prices, RUB", labels=["input"]
        )
        cost.add_metric([stem], self._cost())
        yield cost
        yield _gauge(
            "mira_batch_duration_seconds",
            "Seconds the run has taken",
            stem,
            time.monotonic() - self._started,
        )
        yield _gauge(
            "mira_batch_waiting_until_timestamp_seconds",
            "When the wait for Mira's daily reset ends (Unix time; 0: no wait)",
            stem,
            self._waiting_until(),
        )
        if self.exit_code is not None:
            yield _gauge(
                "mira_batch_exit_code", "The run's exit code", stem, self.exit_code
            )
        if self.finished_at is not None:
            yield _gauge(
                "mira_batch_last_finished_timestamp_seconds",
                "When the run finished (Unix time)",
                stem,
                self.finished_at,
            )


def _counter(
    name: str, doc: str, label: str, values: dict[Any, int], stem: str
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["input", label])
    for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
        family.add_metric([stem, str(key)], value)
    return family


def _gauge(name: str, doc: str, stem: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["input"])
    family.add_metric([stem], value)
    return family


class Metrics:
    """Writes the textfile now and then, and pushes at the end."""

    def __init__(
        self,
        collector: RunCollector,
        *,
        file: Path | None,
        push_url: str | None,
        stem: str,
    ) -> None:
        self._collector = collector
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(collector)
        self._file = file
        self._push_url = push_url
        self._stem = stem

    def write(self) -> None:
        """Write the textfile (atomically: a temporary file, then a rename)."""
        if self._file is None:
            return
        try:
            write_to_textfile(str(self._file), self._registry)
        except OSError as exc:
            log.warning("could not write the metrics file %s: %s", self._file, exc)

    async def finish(self, exit_code: int) -> None:
        """The final metrics: the exit code and the time, written and pushed."""
        self._collector.exit_code = exit_code
        self._collector.finished_at = time.time()
        self.write()
        if self._push_url is None:
            return
        try:
            await asyncio.to_thread(
                push_to_gateway,
                self._push_url,
                job=JOB,
                registry=self._registry,
                grouping_key={"input": self._stem},
                timeout=10,
            )
        except OSError as exc:  # URLError is an OSError
            log.warning("could not push the metrics to %s: %s", self._push_url, exc)
