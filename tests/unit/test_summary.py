"""Latency percentiles, exit codes and the summary's shape."""

from __future__ import annotations

import pytest

from worker.report import render_summary
from worker.summary import LatencyHistogram, RunStats, build_summary, exit_code_for


def test_percentiles_are_within_two_percent() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.add(ms / 1000)
    assert hist.percentile(50) == pytest.approx(0.5, rel=0.02)
    assert hist.percentile(99) == pytest.approx(0.99, rel=0.02)
    assert hist.percentile(100) == pytest.approx(1.0)
    assert LatencyHistogram().percentile(50) is None


@pytest.mark.parametrize(
    ("reason", "failed", "signal", "code"),
    [
        ("completed", False, None, 0),
        ("completed", True, None, 1),
        ("auth_failed", False, None, 3),
        ("payment_required", True, None, 4),
        ("rate_limit_budget", False, None, 5),
        ("deadline", False, None, 5),
        ("token_budget", False, None, 5),
        ("systematic_failure", True, None, 6),
        ("interrupted", False, 130, 130),
        ("interrupted", False, 143, 143),
    ],
)
def test_exit_codes(reason: str, failed: bool, signal: int | None, code: int) -> None:
    assert exit_code_for(reason, any_failed=failed, signal_exit=signal) == code


def test_summary_has_the_contract_fields_and_renders() -> None:
    stats = RunStats(total=10, succeeded=6, failed=2, skipped=1, requests_sent=9)
    stats.add_usage({"prompt_tokens": 5, "completion_tokens": 7})
    stats.retries["server_error"] += 2
    stats.latency.add(0.1)
    summary = build_summary(
        stats,
        stop_reason="completed",
        message=None,
        exit_code=1,
        elapsed_s=2.0,
        files={"input": "in.jsonl", "results": "r", "errors": "e"},
        concurrency={"ceiling": 16, "final": 8, "decreases": 1},
    )
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
    assert "--retry-failed" in summary["next_step"]
    text = render_summary(summary)
    assert "6 succeeded" in text
    assert "server_error 2" in text
