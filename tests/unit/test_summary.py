"""Latency percentiles, exit codes and the summary's shape."""

from __future__ import annotations

import pytest

from worker.domain.prices import PriceBook
from worker.domain.summary import Concurrency, Learned, RunSummary, Timeline
from worker.exits import StopReason, exit_code_for
from worker.report.render import render_summary
from worker.report.stats import LatencyHistogram, RunStats
from worker.report.summary import Ending, summarize
from worker.report.tally import Tally


def test_percentiles_are_within_two_percent() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.add(ms / 1000)
    assert hist.percentile(50) == pytest.approx(0.5, rel=0.02)
    assert hist.percentile(99) == pytest.approx(0.99, rel=0.02)
    assert hist.percentile(100) == pytest.approx(1.0)
    assert LatencyHistogram().percentile(50) is None


@pytest.mark.parametrize(
    ("reason", "failed", "code"),
    [
        (None, False, 0),
        (None, True, 1),
        (StopReason.AUTH_FAILED, False, 3),
        (StopReason.PAYMENT_REQUIRED, True, 4),
        (StopReason.RATE_LIMIT_BUDGET, False, 5),
        (StopReason.DEADLINE, False, 5),
        (StopReason.TOKEN_BUDGET, False, 5),
        (StopReason.SYSTEMATIC_FAILURE, True, 6),
        (StopReason.OUTPUT_FAILED, True, 7),
        (StopReason.SIGINT, False, 130),
        (StopReason.SIGTERM, False, 143),
    ],
)
def test_exit_codes(reason: StopReason | None, failed: bool, code: int) -> None:
    assert exit_code_for(reason, any_failed=failed) == code


def _summary(stats: RunStats, ending: Ending | None = None) -> RunSummary:
    return summarize(
        stats,
        ending=ending or Ending(),
        elapsed_s=2.0,
        files={"input": "in.jsonl", "results": "r", "errors": "e"},
        concurrency=Concurrency(ceiling=16, final=8, decreases=1),
        learned=Learned(),
        cost=PriceBook().summary({}, {}),
        timeline=Timeline(step_s=0.25, columns=["t_s"], rows=[[0.25]]),
    )


def test_summary_has_the_contract_fields_and_renders() -> None:
    stats = RunStats(total=10, succeeded=6, failed=2, skipped=1, requests_sent=9)
    Tally(stats).used({"prompt_tokens": 5, "completion_tokens": 7})
    stats.retries["server_error"] += 2
    stats.latency.add(0.1)
    typed = _summary(stats)
    summary = typed.to_json()
    for key in (
        "total",
        "succeeded",
        "failed",
        "skipped",
        "not_attempted",
        "stop_reason",
    ):
        assert key in summary
    assert summary["not_attempted"] == 1
    assert summary["tokens"] == {"prompt": 5, "completion": 7, "total": 12}
    assert summary["retries"] == {"total": 2, "server_error": 2}
    assert summary["requests_per_s"] == 4.5
    assert "--retry-failed" in str(summary["next_step"])
    assert summary["counts"] == typed.counts.model_dump()
    assert all(summary[k] == v for k, v in typed.counts.model_dump().items())
    text = render_summary(typed)
    assert "6 succeeded" in text
    assert "server_error 2" in text


def test_the_summary_reads_back_as_it_was_written() -> None:
    stats = RunStats(total=3, succeeded=2, cache_hits=1, deduplicated=1)
    ending = Ending(StopReason.SIGTERM, "received SIGTERM", abandoned=2)
    summary = _summary(stats, ending)
    assert RunSummary.from_bytes(summary.to_bytes()) == summary
    text = render_summary(summary)
    assert "1 from the cache" in text  # every count the file has, shown
    assert "1 shared a duplicate's request" in text
    assert summary.exit_code == 143


def test_a_summary_of_an_earlier_version_reads_with_defaults() -> None:
    old = {"total": 4, "succeeded": 4, "stop_reason": "completed", "exit_code": 0}
    summary = RunSummary.from_json(old)
    assert summary.counts.succeeded == 4
    assert summary.slots_left_held == 0
    assert summary.cost.book is None
    with pytest.raises(ValueError, match="JSON object"):
        RunSummary.from_json([1, 2])


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -1_000_000},
        {"prompt_tokens": "7", "completion_tokens": 3.5, "total_tokens": True},
        {"total_tokens": -1},
    ],
)
def test_usage_from_the_server_is_clamped_and_said_once(
    usage: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    stats = RunStats()
    tally = Tally(stats)
    tally.used({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    tally.used(usage)
    tally.used(usage)
    assert stats.total_tokens >= 15
    assert min(stats.prompt_tokens, stats.completion_tokens) >= 0
    assert caplog.text.count("not a token count") == 1


def test_a_lying_total_is_the_sum_of_valid_parts() -> None:
    stats = RunStats()
    total = Tally(stats).used(
        {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": -1000}
    )
    assert total.tokens == 12
    assert stats.total_tokens == 12
