"""`mira-batch collect`: one row per input line, in input order, with its outcome.

The results and errors files are in completion order, so they are first loaded
into an index on disk (the stdlib's sqlite3); the input is then streamed twice,
once to match it against the index (and find the metadata columns), once to
write the rows. Memory stays flat at any size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from worker.collect.index import OUTCOME_COLUMNS, OutcomeIndex
from worker.collect.rows import Layout, Row, RowWriter, format_of, open_row_writer
from worker.domain.prices import PriceBook
from worker.domain.schema import Schema
from worker.errors import ConfigError
from worker.files.jobs import DEFAULT_RULES, Line, Rules, read_line

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


def _lines(source: Path) -> Iterator[tuple[int, bytes]]:
    with open(source, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if raw.strip():
                yield line_no, raw


def _parse(raw: bytes, line_no: int, rules: Rules) -> Line:
    """An input line, as far as it reads: its id, model, metadata, schema."""
    return read_line(raw, line_no, rules)


def collect(
    source: Path,
    to: Path,
    *,
    results: Path,
    errors: Path,
    prices: PriceBook,
    rules: Rules = DEFAULT_RULES,
    kind: str | None = None,
    progress: Any = None,
) -> CollectReport:
    """Write one row per non-blank line of `source`, in order, to `to` (in the
    format `kind` names, else its extension).

    Raises:
        ConfigError: the input is missing, the format unknown, or the outputs
            belong to another input.
    """
    kind = format_of(to, kind)
    if not source.is_file():
        raise ConfigError(f"cannot open input {source}: no such file")
    with tempfile.TemporaryDirectory(prefix="mira-collect-") as tmp:
        index = OutcomeIndex(Path(tmp))
        try:
            index.load(results, errors)
            layout = _match(source, index, rules)
            unmatched, example = index.unmatched()
            if unmatched:
                raise ConfigError(
                    f"{unmatched} records in {results} or {errors} belong to no line "
                    f"of {source} (for example {example!r}): are they another "
                    "input's outputs? Name them with --results and --errors"
                )
            with open_row_writer(to, kind, layout) as writer:
                return _write_rows(source, index, writer, prices, rules, progress)
        finally:
            index.close()


def _match(source: Path, index: OutcomeIndex, rules: Rules) -> Layout:
    """Claim each line's outcome; return the columns: the metadata keys seen,
    and the top-level properties of the object schemas the lines ask for."""
    keys: set[str] = set()
    parsed: dict[str, str | None] = {}
    for line_no, raw in _lines(source):
        line = _parse(raw, line_no, rules)
        index.find(line_no, line.job_id, claim=True)
        if line.metadata:
            keys.update(line.metadata)
        if line.schema is not None:
            for name in line.schema.properties:
                parsed.setdefault(name, _json_type(line.schema, name))
    return Layout(COLUMNS, metadata=sorted(keys), parsed=list(parsed.items()))


def _json_type(schema: Schema, name: str) -> str | None:
    """A top-level property's JSON type, when it has exactly one."""
    props = schema.document.get("properties")
    prop = props.get(name) if isinstance(props, dict) else None
    kind = prop.get("type") if isinstance(prop, dict) else None
    return kind if isinstance(kind, str) else None


def _write_rows(
    source: Path,
    index: OutcomeIndex,
    writer: RowWriter,
    prices: PriceBook,
    rules: Rules,
    progress: Any,
) -> CollectReport:
    report = CollectReport()
    for line_no, raw in _lines(source):
        line = _parse(raw, line_no, rules)
        found = index.find(line_no, line.job_id)
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(line=line_no, custom_id=line.job_id, status="pending")
        parsed = None
        if found is not None:
            row.update(zip(OUTCOME_COLUMNS.split(", "), found, strict=True))
            row["custom_id"] = row["custom_id"] or line.job_id
            text = row.pop("parsed")
            parsed = None if text is None else orjson.loads(text)
        row.pop("parsed", None)
        if row["cost_rub"] is None and row["status"] == "succeeded":
            # A record of an earlier version: priced as the run priced.
            cost = prices.rubles(
                line.model, row["prompt_tokens"] or 0, row["completion_tokens"] or 0
            )
            row["cost_rub"] = None if cost is None else round(cost, 8)
        report.cost_rub += row["cost_rub"] or 0.0
        writer.write(Row({}, row, line.metadata, parsed))
        report.rows += 1
        report.by_status[row["status"]] = report.by_status.get(row["status"], 0) + 1
        if progress is not None:
            progress(len(raw))
    return report
