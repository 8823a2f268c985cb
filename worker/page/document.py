"""The report page itself: the summary's header, the timeline's charts (uPlot,
inlined with the page's own script and style) and the outcome tables.

Everything is inside the one file and a Content-Security-Policy forbids any
other source, so the page never reaches out, even if some text in it tried to.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

import orjson

from worker.domain.summary import COMPLETED, RunSummary, Timeline
from worker.page.tables import Outcomes

POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:"
)
CHARTS = (
    ("chart-answers", "Answers per second"),
    ("chart-flight", "Requests in flight against the learned cap"),
    ("chart-refusals", "429s by kind, and retries"),
    ("chart-latency", "Latency p50 and p95"),
    ("chart-cost", "Cost so far"),
)
# Counts every request the policy refused, before any other script runs.
_WATCH = (
    'document.addEventListener("securitypolicyviolation",function(){'
    'var b=document.body;b.setAttribute("data-blocked",'
    'String(Number(b.getAttribute("data-blocked"))+1));});'
)


@cache
def _asset(name: str) -> str:
    return resources.files("worker.page").joinpath("assets", name).read_text("utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_page(stem: str, summary: RunSummary, outcomes: Outcomes) -> str:
    """The whole report as one HTML document."""
    timeline = summary.timeline
    # `<` as an escape: no text in the data can close the script element.
    data = orjson.dumps(timeline.model_dump()).decode().replace("<", "\\u003c")
    figures = "".join(
        f'<figure><figcaption>{title}</figcaption><div id="{name}"></div></figure>'
        for name, title in CHARTS
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mira-batch run report: {_e(stem)}</title>"
        f"<style>{_asset('uPlot.min.css')}\n{_asset('report.css')}</style></head>"
        f'<body data-charts="0" data-blocked="0"><script>{_WATCH}</script>'
        f"{_header(stem, summary)}"
        f'<section><h2>Over time</h2><div class="charts">{figures}</div>'
        f'<p class="note">{_step_note(timeline)}</p></section>'
        f"{_as_data(summary, outcomes)}{_slowest(outcomes)}{_failed(outcomes)}"
        f'<script type="application/json" id="timeline">{data}</script>'
        f"<script>{_asset('uPlot.iife.min.js')}</script>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def _step_note(timeline: Timeline) -> str:
    return (
        f"Intervals of this run: {len(timeline.rows)}, about {timeline.step_s:g} s "
        "each (a longer run keeps as many, each spanning longer)."
    )


def _header(stem: str, summary: RunSummary) -> str:
    reason, code = summary.stop_reason, summary.exit_code
    kind = "stopped" if reason != COMPLETED else "ok" if code == 0 else "failed"
    counts, cost = summary.counts, summary.cost
    totals = [
        ("succeeded", counts.succeeded),
        ("failed", counts.failed),
        ("not attempted", counts.not_attempted),
        ("requests sent", summary.requests.sent),
        ("429s", summary.requests.by_status.get("429", 0)),
        (
            "messages per answer",
            "n/a"
            if summary.messages_per_answer is None
            else f"{summary.messages_per_answer:.2f}",
        ),
        ("retries", summary.retries.get("total", 0)),
        ("cost", f"{cost.total:,.2f} RUB at {cost.prices} prices"),
        ("elapsed", f"{summary.elapsed_s:,.1f} s"),
        ("jobs per second", summary.jobs_per_s),
    ]
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in totals)
    message = summary.message
    return (
        f'<header class="{kind}"><h1>{_e(stem)}: {_e(reason)} (exit code {_e(code)})'
        "</h1>"
        + (f"<p>{_e(message)}</p>" if message else "")
        + f'<p class="next">Next step: {_e(summary.next_step or "")}</p>'
        f'<dl class="totals">{items}</dl></header>'
    )


def _as_data(summary: RunSummary, outcomes: Outcomes) -> str:
    """Answers as data: outcomes by cause, then the first answers that never
    became usable JSON, with what was wrong (only when a schema or a cut
    answer came into the run)."""
    data = any(c.startswith("usable") for c in outcomes.causes) or any(
        (summary.reasks, summary.invalid_output, summary.truncated)
    )
    if not data:
        return ""
    causes = "".join(
        f'<tr><td>{_e(cause)}</td><td class="num">{count:,}</td></tr>'
        for cause, count in sorted(outcomes.causes.items(), key=lambda kv: -kv[1])
    )
    examples = "".join(
        f"<li><code>{_e(bad.job)}</code>: <q>{_e(bad.answer)}</q><ul>"
        + "".join(
            f"<li><code>{_e(path)}</code>: {_e(message)}</li>"
            for path, message in bad.problems
        )
        + "</ul></li>"
        for bad in outcomes.invalid
    )
    return (
        "<section><h2>Answers as data</h2>"
        f"<p>{summary.reasks:,} re-asks for usable JSON, {summary.invalid_output:,} "
        f"jobs with invalid output, {summary.truncated:,} answers cut at "
        "max_tokens.</p>"
        '<table><thead><tr><th>outcome</th><th class="num">jobs</th></tr></thead>'
        f"<tbody>{causes}</tbody></table>"
        + (
            "<h3>The first answers that never became usable JSON</h3>"
            f"<ul>{examples}</ul>"
            if examples
            else ""
        )
        + "</section>"
    )


def _slowest(outcomes: Outcomes) -> str:
    rows = "".join(
        f'<tr><td><code>{_e(job)}</code></td><td class="num">{latency_s:,.2f}</td>'
        f'<td class="num">{attempts}</td></tr>'
        for latency_s, job, attempts in outcomes.ranked()
    )
    if not rows:
        return "<section><h2>Slowest jobs</h2><p>No answers yet.</p></section>"
    return (
        f"<section><h2>Slowest jobs</h2><p>The {len(outcomes.slowest)} slowest of "
        f"{outcomes.answers:,} answers (the time of the answering attempt).</p>"
        '<table><thead><tr><th>job</th><th class="num">seconds</th>'
        '<th class="num">attempts</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></section>"
    )


def _failed(outcomes: Outcomes) -> str:
    if not outcomes.failed:
        return "<section><h2>Failed jobs</h2><p>No job failed.</p></section>"
    rows = "".join(
        f'<tr><td><code>{_e(code)}</code></td><td class="num">{failed.count:,}</td>'
        "<td>"
        + "<br>".join(
            f"<code>{_e(job)}</code>: {_e(message)}" for job, message in failed.examples
        )
        + "</td></tr>"
        for code, failed in outcomes.by_count()
    )
    return (
        "<section><h2>Failed jobs by error code</h2><table><thead><tr><th>code</th>"
        '<th class="num">jobs</th><th>for example</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )
