"""`mira-batch collect`: one row per input item (a line, or a table's row), in
input order, with its outcome.

The results and errors files are in completion order, so they are first loaded
into an index on disk (the stdlib's sqlite3); the input is then read twice,
once to match it against the index (and find the metadata keys, a table's
columns and the schemas' properties), once to write the rows. Memory stays
flat at any size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from worker.collect.index import OUTCOME_COLUMNS, OutcomeIndex
from worker.collect.rows import Layout, Row, RowWriter, format_of, open_row_writer
from worker.domain.prices import PriceBook
from worker.domain.schema import Schema
from worker.errors import ConfigError
from worker.files.sources import JobSource

COLUMNS = (
    "line",
    "custom_id",
    "status",
    "content",
    "finish_reason",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_rub",
    "error_code",
    "error_message",
    "attempts",
    "latency_s",
    "request_id",
    "request_fingerprint",
)


@dataclass(slots=True)
class CollectReport:
    """What collect wrote."""

    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    cost_rub: float = 0.0


def collect(
    source: JobSource,
    name: str,
    to: Path,
    *,
    results: Path,
    errors: Path,
    prices: PriceBook,
    kind: str | None = None,
    progress: Callable[[int], object] | None = None,
) -> CollectReport:
    """Write one row per item of `source` (the input `name`), in order, to
    `to` (in the format `kind` names, else its extension).

    Raises:
        ConfigError: the input cannot be read again (a pipe), the format is
            unknown, or the outputs belong to another input.
    """
    kind = format_of(to, kind)
    if not source.rereadable():
        raise ConfigError(f"collect reads {name} twice: name a file, not a pipe")
    with tempfile.TemporaryDirectory(prefix="mira-collect-") as tmp:
        index = OutcomeIndex(Path(tmp))
        try:
            index.load(results, errors)
            layout = _match(source, index)
            unmatched, example = index.unmatched()
            if unmatched:
                raise ConfigError(
                    f"{unmatched} records in {results} or {errors} belong to no "
                    f"{source.unit} of {name} (for example {example!r}): are they "
                    "another input's outputs? Name them with --results and --errors"
                )
            with open_row_writer(to, kind, layout) as writer:
                return _write_rows(source, index, writer, prices, progress)
        finally:
            index.close()


def _match(source: JobSource, index: OutcomeIndex) -> Layout:
    """Claim each item's outcome; return the columns: the table's own, the
    metadata keys seen, and the top-level properties of the object schemas the
    items ask for."""
    keys: set[str] = set()
    parsed: dict[str, str | None] = {}
    inputs: dict[str, object] = dict(source.columns())
    for number, item in source.unread(0):
        facts = source.describe(number, item)
        index.find(number, facts.job_id, claim=True)
        if facts.metadata:
            keys.update(facts.metadata)
        for column in facts.values:  # records: their keys, as they come
            inputs.setdefault(column, None)
        if facts.schema is not None:
            for name in facts.schema.properties:
                parsed.setdefault(name, _json_type(facts.schema, name))
    outcome = set(COLUMNS)
    # An input column named like an outcome column keeps its value as input.<name>.
    named = [(f"input.{c}" if c in outcome else c, t) for c, t in inputs.items()]
    return Layout(
        COLUMNS, inputs=named, metadata=sorted(keys), parsed=list(parsed.items())
    )


def _json_type(schema: Schema, name: str) -> str | None:
    """A top-level property's JSON type, when it has exactly one."""
    props = schema.document.get("properties")
    prop = props.get(name) if isinstance(props, dict) else None
    kind = prop.get("type") if isinstance(prop, dict) else None
    return kind if isinstance(kind, str) else None


def _write_rows(
    source: JobSource,
    index: OutcomeIndex,
    writer: RowWriter,
    prices: PriceBook,
    progress: Callable[[int], object] | None,
) -> CollectReport:
    report = CollectReport()
    outcome_names = set(COLUMNS)
    for number, item in source.unread(0):
        facts = source.describe(number, item)
        found = index.find(number, facts.job_id)
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(line=number, custom_id=facts.job_id, status="pending")
        parsed = None
        if found is not None:
            row.update(zip(OUTCOME_COLUMNS.split(", "), found, strict=True))
            row["custom_id"] = row["custom_id"] or facts.job_id
            text = row.pop("parsed")
            parsed = None if text is None else orjson.loads(text)
        row.pop("parsed", None)
        if row["cost_rub"] is None and row["status"] == "succeeded":
            # A record of an earlier version: priced as the run priced.
            cost = prices.rubles(
                facts.model, row["prompt_tokens"] or 0, row["completion_tokens"] or 0
            )
            row["cost_rub"] = None if cost is None else round(cost, 8)
        report.cost_rub += row["cost_rub"] or 0.0
        values = {
            (f"input.{k}" if k in outcome_names else k): v
            for k, v in facts.values.items()
        }
        writer.write(Row(values, row, facts.metadata, parsed))
        report.rows += 1
        report.by_status[row["status"]] = report.by_status.get(row["status"], 0) + 1
        if progress is not None:
            progress(1)
    return report
