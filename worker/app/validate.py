"""`mira-batch validate`: check every line, send nothing, report problems and costs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from worker.config import Settings
from worker.domain.job import Job
from worker.domain.prices import PriceBook
from worker.errors import InvalidJobError, KeyInPromptError
from worker.files.idset import IdSet
from worker.files.jobs import last_user_message, rules_for
from worker.files.jsonl import open_input
from worker.files.sources import open_source
from worker.run.reader import SYSTEM_DROPPED

MAX_PROBLEMS_SHOWN = 200
# Jobs with a schema whose answer is asked for again, in the estimate: each
# re-ask sends the conversation so far (the prompt and the refused answer).
REASK_ALLOWANCE = 0.10


@dataclass(slots=True)
class ValidationReport:
    """What validate found."""

    lines: int = 0
    valid: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    models: Counter[str] = field(default_factory=Counter)
    prompt_tokens: Counter[str] = field(default_factory=Counter)
    completion_tokens: Counter[str] = field(default_factory=Counter)
    with_system: int = 0  # valid jobs whose system messages Mira would drop
    # Valid jobs whose request an earlier line already asks (by fingerprint),
    # and their estimated tokens by model: what --dedupe would not send.
    identical: int = 0
    identical_tokens: dict[str, list[int]] = field(default_factory=dict)
    # Valid jobs whose answer must meet a JSON Schema, and the tokens their
    # re-asks may add, by model (REASK_ALLOWANCE of them asked once more).
    with_schema: int = 0
    reask_tokens: dict[str, list[float]] = field(default_factory=dict)

    unit: str = "line"  # what the input's items are: lines, or a table's rows
    notice: str | None = None  # said once of the input (row-number ids)
    keys_in_prompts: int = 0  # invalid: a key-shaped string in the messages
    shown: list[tuple[int, str]] = field(default_factory=list)  # --show N

    @property
    def invalid(self) -> int:
        """Lines that would get an invalid_input record."""
        return len(self.problems)

    def add(self, job: Job, *, shown: bool = False) -> None:
        """Count a valid job; keep its prompt when it is one to show."""
        self.valid += 1
        self.models[job.model] += 1
        self.prompt_tokens[job.model] += job.prompt_tokens_est
        self.completion_tokens[job.model] += job.completion_tokens_est
        self.with_system += job.system_messages > 0
        if job.schema is not None:
            self.with_schema += 1
            reask = self.reask_tokens.setdefault(job.model, [0.0, 0.0])
            # The prompt again, the refused answer in it, and a new answer.
            asked = job.prompt_tokens_est + job.completion_tokens_est
            reask[0] += REASK_ALLOWANCE * asked
            reask[1] += REASK_ALLOWANCE * job.completion_tokens_est
        if shown:
            self.shown.append((job.line, last_user_message(job)))

    def costs(self, prices: PriceBook) -> dict[str, float | None]:
        """Each model's estimated cost, RUB, in model order (None: no price)."""
        return {
            model: prices.rubles(
                model,
                round(self.prompt_tokens[model] + self.reasks(model)[0]),
                round(self.completion_tokens[model] + self.reasks(model)[1]),
            )
            for model in sorted(self.models)
        }

    def reasks(self, model: str) -> tuple[float, float]:
        """The prompt and completion tokens a model's re-asks may add."""
        tokens = self.reask_tokens.get(model, [0.0, 0.0])
        return tokens[0], tokens[1]

    @property
    def reasks_expected(self) -> float:
        """The re-asks the estimate allows for: each is one more message."""
        return self.with_schema * REASK_ALLOWANCE

    def total_cost(self, prices: PriceBook) -> float:
        """The estimated cost of the models with a price, RUB."""
        return sum(cost or 0.0 for cost in self.costs(prices).values())


async def validate_file(
    source: str, settings: Settings, *, show: int | None = None
) -> ValidationReport:
    """Check every line (or row) of `source` as `run` would; keep the prompts
    of the first `show` jobs (by default a table's first, a job file's none).

    Raises:
        ConfigError: the file cannot be opened, a --json-schema unusable, or (a
            table) its template or header unusable.
    """
    report = ValidationReport()
    seen, requests = IdSet(), IdSet()
    rules = rules_for(settings)
    fh = open_input(source)
    try:
        jobs = open_source(fh, source, settings, rules)
        report.unit, report.notice = jobs.unit, jobs.notice
        if show is None:
            show = 1 if jobs.unit == "row" else 0
        async for number, item in jobs.items():
            report.lines += 1
            try:
                job = jobs.job(number, item)
            except InvalidJobError as exc:
                report.problems.append((number, exc.message))
                report.keys_in_prompts += isinstance(exc, KeyInPromptError)
                if exc.job_id is not None:
                    seen.add(exc.job_id)
                continue
            if not seen.add(job.id):
                report.problems.append(
                    (number, f"id {job.id!r} repeats an earlier {jobs.unit}'s id")
                )
                continue
            report.add(job, shown=len(report.shown) < show)
            if not requests.add(job.fingerprint):
                report.identical += 1
                tokens = report.identical_tokens.setdefault(job.model, [0, 0])
                tokens[0] += job.prompt_tokens_est
                tokens[1] += job.completion_tokens_est
    finally:
        if source != "-":
            fh.close()
    return report


def render_report(source: str, report: ValidationReport, prices: PriceBook) -> str:
    """Counts, models, token and cost estimates, then every problem by line."""
    lines = [
        f"{source}: {report.lines} jobs, {report.valid} valid, "
        f"{report.invalid} invalid",
    ]
    for number, shown in report.shown:
        lines.append(f"  the prompt of {report.unit} {number}:")
        lines += [f"    | {text}" for text in shown.splitlines() or [""]]
    if report.notice:
        lines.append(f"  note: {report.notice}")
    costs = report.costs(prices)
    for model, cost in costs.items():
        count = report.models[model]
        prompt, completion = (
            report.prompt_tokens[model],
            report.completion_tokens[model],
        )
        cost_text = (
            "no price known (add --price MODEL=IN,OUT)"
            if cost is None
            else f"about {cost:,.2f} RUB"
        )
        lines.append(
            f"  model {model}: {count} jobs, ~{prompt:,} input tokens, "
            f"up to ~{completion:,} output tokens, {cost_text}"
        )
    total_prompt = sum(report.prompt_tokens.values())
    total_completion = sum(report.completion_tokens.values())
    lines.append(
        f"  estimated tokens: ~{total_prompt:,} input "
        f"+ up to ~{total_completion:,} output"
    )
    priced_all = None not in costs.values()
    qualifier = "" if priced_all else " (models without a price not counted)"
    lines.append(
        f"  estimated cost: about {report.total_cost(prices):,.2f} RUB{qualifier}, at "
        f"{prices.describe()}"
    )
    lines.append(
        "  (tokens are counted as Mira counts and bills them, in whitespace-separated "
        "words; output assumes max_tokens, or 256 when unset)"
    )
    if report.with_system:
        lines.append("  warning: " + SYSTEM_DROPPED % report.with_system)
    if report.keys_in_prompts:
        lines.append(
            f"  warning: {report.keys_in_prompts} {report.unit}s carry a string "
            "shaped like a Mira API key: they are not sent (key_in_prompt); treat "
            "those keys as leaked and revoke them"
        )
    if report.with_schema:
        lines.append(
            f"  schemas: {report.with_schema} jobs must answer as JSON under a "
            "schema (each answer checked; re-asked up to --max-reasks times); the "
            f"estimate allows {REASK_ALLOWANCE:.0%} of them one re-ask, a paid "
            "request"
        )
    lines.append(_identical(report, prices))
    for line_no, message in report.problems[:MAX_PROBLEMS_SHOWN]:
        lines.append(f"{report.unit} {line_no}: {message}")
    if report.invalid > MAX_PROBLEMS_SHOWN:
        lines.append(
            f"... and {report.invalid - MAX_PROBLEMS_SHOWN} more invalid {report.unit}s"
        )
    return "\n".join(lines)


def _identical(report: ValidationReport, prices: PriceBook) -> str:
    """How many requests repeat an earlier line's, and what sending each once saves."""
    if not report.identical:
        return "  identical requests: none"
    saved = sum(
        prices.rubles(model, prompt, completion) or 0.0
        for model, (prompt, completion) in report.identical_tokens.items()
    )
    return (
        f"  identical requests: {report.identical} repeat an earlier line's request; "
        f"--dedupe would save {report.identical} messages and about {saved:,.2f} RUB"
    )


def report_object(
    source: str, report: ValidationReport, prices: PriceBook
) -> dict[str, object]:
    """What validate found, as one JSON object (`--format json`)."""
    by_model = {
        model: {
            "jobs": report.models[model],
            "prompt_tokens": report.prompt_tokens[model],
            "completion_tokens": report.completion_tokens[model],
            "cost_rub": cost,
        }
        for model, cost in report.costs(prices).items()
    }
    return {
        "input": source,
        "lines": report.lines,
        "valid": report.valid,
        "invalid": report.invalid,
        "with_system": report.with_system,
        "with_schema": report.with_schema,
        "keys_in_prompts": report.keys_in_prompts,
        "unit": report.unit,
        "shown": [{report.unit: n, "prompt": text} for n, text in report.shown],
        "reask_allowance": REASK_ALLOWANCE,
        "identical": report.identical,
        "prices": prices.source,
        "estimated_cost_rub": round(report.total_cost(prices), 6),
        "by_model": by_model,
        "problems": [
            {"line": line_no, "message": message}
            for line_no, message in report.problems[:MAX_PROBLEMS_SHOWN]
        ],
    }
