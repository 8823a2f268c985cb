"""The run report: one self-contained page, every chart drawn in a real browser
with nothing fetched, its size bounded whatever the number of jobs."""

from __future__ import annotations

import functools
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.batch import Batch
from tests.browser import render
from tests.helpers import call_main, cli_env, simple_jobs, write_jobs
from worker.domain.summary import RunSummary
from worker.files.outputs import RunFiles
from worker.page.document import render_page
from worker.page.tables import Outcomes
from worker.report.stats import RunStats
from worker.report.timeline import Gauges, TimelineSampler
from worker.sim.faults import Faults
from worker.sim.server import Simulator

FAULTS = Faults(
    seed=5, p429=0.02, p500=0.02, p_drop=0.005, p_upstream_error=0.01, p_moderated=0.005
)


class Elements(HTMLParser):
    """Every element's tag and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def assert_self_contained(page: str) -> None:
    """No element may load anything: no src, href, or inline handler."""
    parser = Elements()
    parser.feed(page)
    for tag, attrs in parser.found:
        assert not {"src", "href", "srcset", "action"} & set(attrs), (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    assert [t for t, _ in parser.found].count("script") == 4
    assert "url(" not in page
    assert "@import" not in page


@pytest.mark.slow
async def test_a_run_with_faults_writes_a_report_that_draws_every_chart_offline(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.faults = FAULTS
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(600))
    batch = Batch(sim, tmp_path)
    batch.files = RunFiles.default(str(tmp_path / "jobs.jsonl"), directory=tmp_path)
    assert await batch.run(concurrency=32) == 1  # moderation fails some jobs
    page = tmp_path / "jobs.report.html"
    assert batch.summary["files"]["report"] == str(page)
    text = page.read_text()
    assert_self_contained(text)
    assert "content_filtered" in text  # the failed jobs, by code
    assert "Slowest jobs" in text
    # Every request sent, refused or not, over the answers written.
    sent, answers = batch.summary["requests"]["sent"], batch.summary["succeeded"]
    assert sent > answers  # the faults cost messages
    assert batch.summary["messages_per_answer"] == round(sent / answers, 3)
    assert "messages per answer" in text
    assert f"{sent / answers:.2f}" in text
    shown = render(page)
    assert shown.body("data-charts") == "5"
    assert shown.canvases >= 5
    assert shown.body("data-blocked") == "0"  # the page asked for nothing

    page.unlink()
    again = call_main(
        "report", "jobs.jsonl", cwd=tmp_path, env=cli_env(), monkeypatch=monkeypatch
    )
    assert again.code == 0, again.stderr
    assert page.read_text().count("content_filtered") == text.count("content_filtered")


def million_job_summary(**changes: Any) -> RunSummary:
    """The summary of a run of a million jobs over about 14 hours."""
    return RunSummary.from_json(
        {
            "stop_reason": "completed",
            "exit_code": 1,
            "message": None,
            "next_step": "read the errors file; fix the cause, then --retry-failed",
            "succeeded": 1_000_000,
            "failed": 20_000,
            "cost": {"total": 2500.0, "prices": "charged"},
            "timeline": _million_job_timeline(),
            **changes,
        }
    )


@functools.cache
def _million_job_timeline() -> dict[str, Any]:
    """Its timeline, sampled once for every test here (2,000 samples, thinned to
    the page's few hundred; read only)."""
    timeline, stats = TimelineSampler(("in_flight", "window", "other")), RunStats()
    refusals = {"in_flight": 0, "window": 0, "other": 0}
    timeline.sample(0.0, stats, Gauges(0, 3, refusals, 0.0))
    for step in range(1, 2_001):
        stats.succeeded += 500
        stats.requests_sent += 507
        stats.latency.add(0.3 + (step % 11) / 10)
        refusals = {**refusals, "in_flight": refusals["in_flight"] + step % 3}
        timeline.sample(step * 25.0, stats, Gauges(3, 3, refusals, step * 1.25))
    exported: dict[str, Any] = timeline.export().model_dump()
    return exported


@pytest.mark.slow
def test_a_million_job_report_stays_under_2_mb_and_renders(tmp_path: Path) -> None:
    outcomes = Outcomes()
    # The tables keep a fixed few of any number: 20,000 answers stand for the
    # million as well as 200,000 would.
    for n in range(20_000):
        outcomes.add_answer(
            {"custom_id": f"job-{n}", "latency_s": (n * 7919 % 100_003) / 1000}
        )
    for n in range(20_000):
        record = {
            "custom_id": f"job-{n}-failed",
            "error": {"code": f"http_{400 + n % 40}", "message": "x" * 5000},
        }
        outcomes.add_failure(record)
    page = tmp_path / "million.report.html"
    page.write_text(render_page("million", million_job_summary(), outcomes))
    assert page.stat().st_size < 2 * 1024 * 1024
    shown = render(page)
    assert shown.body("data-charts") == "5"
    assert shown.body("data-blocked") == "0"


def test_hostile_text_cannot_escape_the_page(tmp_path: Path) -> None:
    hostile = '</script><script>fetch("https://evil.invalid")</script><img src=x>'
    outcomes = Outcomes()
    outcomes.add_answer({"custom_id": hostile, "latency_s": 1.0})
    outcomes.add_failure({"custom_id": hostile, "error": {"code": hostile}})
    timeline = million_job_summary().timeline.model_dump()
    timeline["columns"][1] = hostile  # even inside the chart data
    summary = million_job_summary(message=hostile, timeline=timeline)
    text = render_page(hostile, summary, outcomes)
    assert_self_contained(text)
    assert hostile not in text
    json_start = text.index('id="timeline">') + len('id="timeline">')
    data = orjson.loads(text[json_start : text.index("</script>", json_start)])
    assert data["columns"][1] == hostile  # escaped, yet the same text
    assert not re.search(r"<img", text)
