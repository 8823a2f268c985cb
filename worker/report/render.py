"""The end-of-run summary as a compact table for a person."""

from __future__ import annotations

import re
import textwrap

from worker.domain.summary import Cost, Learned, RunSummary


def _ms(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value * 1000:.0f} ms"


def _cost(cost: Cost) -> str:
    """The run's cost, by model, and the prices it is at (charged, list, --price)."""
    if not cost.by_model:
        return "nothing spent"
    parts = [
        f"{model} {'?' if c.cost is None else format(c.cost, ',.4f')}"
        for model, c in cost.by_model.items()
    ]
    return (
        f"{cost.total:,.4f} {cost.currency} at {cost.prices} prices "
        f"({', '.join(parts)})"
    )


def _learned(limits: Learned) -> str:
    """What the account allowed, with the flags that pin it next time."""
    parts, flags = [], []
    if limits.in_flight:
        parts.append(f"{limits.in_flight} in flight")
        flags.append(f"--concurrency {limits.in_flight}")
    if window := limits.window:
        parts.append(f"{window.requests} requests per {window.seconds:g} s")
        flags.append(f"--rpm {window.requests * 60 / window.seconds:.0f}")
    if not parts:
        return "no limit met"
    return f"{', '.join(parts)} (pin with {' '.join(flags)})"


def _jobs(summary: RunSummary) -> str:
    """Every count the summary file has: outcomes, and where answers came from."""
    counts = summary.counts
    text = (
        f"{counts.total} total: {counts.succeeded} succeeded, "
        f"{counts.failed} failed ({summary.invalid} invalid lines), "
        f"{counts.skipped} done before, {counts.not_attempted} not attempted"
    )
    reused = []
    if summary.cache_hits or summary.cache_misses:
        reused.append(
            f"{summary.cache_hits} from the cache ({summary.cache_misses} not in it)"
        )
    if summary.deduplicated:
        reused.append(f"{summary.deduplicated} shared a duplicate's request")
    if summary.reasks or summary.invalid_output:
        reused.append(
            f"{summary.reasks} re-asked for usable JSON, "
            f"{summary.invalid_output} invalid output"
        )
    if summary.truncated:
        reused.append(f"{summary.truncated} answers cut at max_tokens")
    if summary.jobs_with_system_messages:
        reused.append(
            f"{summary.jobs_with_system_messages} sent system messages, which "
            "Mira drops"
        )
    return "; ".join([text, *reused])


def render_summary(summary: RunSummary, columns: int | None = None) -> str:
    """Aligned lines: outcomes, retries, tokens, latency, throughput, next step;
    each value wrapped between its phrases to fit `columns` (None: no limit)."""
    retries = dict(summary.retries)
    retry_total = retries.pop("total", 0)
    causes = ", ".join(f"{cause} {n}" for cause, n in sorted(retries.items())) or "none"
    latency, tokens, files = summary.latency_s, summary.tokens, summary.files
    rows = [
        ("stop reason", f"{summary.stop_reason} (exit {summary.exit_code})"),
        ("jobs", _jobs(summary)),
        ("retries", f"{retry_total} ({causes})"),
        (
            "tokens",
            f"{tokens.total:,} ({tokens.prompt:,} prompt + "
            f"{tokens.completion:,} completion)",
        ),
        (
            "latency",
            f"p50 {_ms(latency.p50)}, p95 {_ms(latency.p95)}, p99 {_ms(latency.p99)}",
        ),
        (
            "throughput",
            f"{summary.requests.sent} requests in {summary.elapsed_s:.1f} s "
            f"({summary.requests_per_s:.1f}/s), concurrency ended at "
            f"{summary.concurrency.final} of {summary.concurrency.ceiling}",
        ),
        ("cost", _cost(summary.cost)),
        ("learned", _learned(summary.learned_limits)),
        ("results", files.get("results", "-")),
        ("errors", files.get("errors", "-")),
    ]
    if files.get("report"):
        rows.append(("report", files["report"]))
    if account := _account(summary):
        rows.insert(-2, ("account", account))
    if summary.message:
        rows.insert(1, ("why", summary.message))
    if summary.next_step:
        rows.append(("next", summary.next_step))
    return _table("mira-batch summary", rows, columns)


def _table(title: str, rows: list[tuple[str, str]], columns: int | None) -> str:
    """Names aligned, and each value wrapped under itself to fit `columns`."""
    width = max(len(name) for name, _ in rows)
    room = None if columns is None else max(20, columns - width - 5)
    lines = [title]
    for name, value in rows:
        first, *rest = fit_phrases(str(value), room)
        lines.append(f"  {name:<{width}}  {first}")
        lines.extend(f"  {'':<{width}}  {more}" for more in rest)
    return "\n".join(lines)


def fit_phrases(value: str, room: int | None) -> list[str]:
    """`value` in lines of at most `room` characters, broken after a comma or a
    semicolon where it can be, else between words; never inside a word."""
    if room is None or len(value) <= room:
        return [value]
    phrases = re.split(r"(?<=[,;]) ", value)
    lines: list[str] = []
    for phrase in phrases:
        if lines and len(lines[-1]) + 1 + len(phrase) <= room:
            lines[-1] += " " + phrase
        elif len(phrase) <= room:
            lines.append(phrase)
        else:
            lines.extend(
                textwrap.wrap(
                    phrase, room, break_long_words=False, break_on_hyphens=False
                )
            )
    return lines


def _account(summary: RunSummary) -> str:
    refusals = summary.daily_messages_on_refusals
    held = summary.slots_left_held
    parts = []
    if summary.messages_per_answer is not None:
        parts.append(
            f"{summary.messages_per_answer:.2f} daily messages per answer "
            "(requests, refusals included)"
        )
    if summary.waits:
        last = summary.waits[-1]
        parts.append(
            f"{len(summary.waits)} waits for the daily reset, the last until "
            f"{last.until}"
        )
    if summary.key_rotations:
        parts.append(f"the key was rotated {summary.key_rotations} times")
    if summary.daily_cap is not None:
        parts.append(f"the daily cap resets at {summary.daily_cap.resets_at}")
    if refusals:
        parts.append(f"{refusals} daily messages spent on refusals")
    if held:
        parts.append(f"{held} slots left held at Mira for up to 5 minutes")
    return "; ".join(parts)
