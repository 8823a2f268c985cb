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

from worker.collect.index import OUTCOME_COLUMNS, OutcomeIndex
from worker.collect.rows import RowWriter, open_row_writer
from worker.domain.prices import PriceBook
from worker.errors import ConfigError
from worker.files.jobs import Rules, read_line

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


def _parse(raw: bytes, line_no: int, default_model: str) -> tuple[str | None, str, Any]:
    """(job id, requested model, metadata) of an input line, as far as it reads."""
    line = read_line(raw, line_no, Rules(model=default_model))
    return line.job_id, line.model, line.metadata


def collect(
    source: Path,
    to: Path,
    *,
    results: Path,
    errors: Path,
    prices: PriceBook,
    default_model: str = "mira",
    progress: Any = None,
) -> CollectReport:
    """Write one row per non-blank line of `source`, in order, to `to`.

    Raises:
        ConfigError: the input is missing, or the outputs belong to another input.
    """
    if not source.is_file():
        raise ConfigError(f"cannot open input {source}: no such file")
    with tempfile.TemporaryDirectory(prefix="mira-collect-") as tmp:
        index = OutcomeIndex(Path(tmp))
        try:
            index.load(results, errors)
            keys = _match(source, index, default_model)
            unmatched, example = index.unmatched()
            if unmatched:
                raise ConfigError(
                    f"{unmatched} records in {results} or {errors} belong to no line "
                    f"of {source} (for example {example!r}): are they another "
                    "input's outputs? Name them with --results and --errors"
                )
            with open_row_writer(to, COLUMNS, sorted(keys)) as writer:
                return _write_rows(
                    source, index, writer, prices, default_model, progress
                )
        finally:
            index.close()


def _match(source: Path, index: OutcomeIndex, default_model: str) -> set[str]:
    """Claim each line's outcome; return the metadata keys seen."""
    keys: set[str] = set()
    for line_no, raw in _lines(source):
        job_id, _, metadata = _parse(raw, line_no, default_model)
        index.find(line_no, job_id, claim=True)
        if metadata:
            keys.update(metadata)
    return keys


def _write_rows(
    source: Path,
    index: OutcomeIndex,
    writer: RowWriter,
    prices: PriceBook,
    default_model: str,
    progress: Any,
) -> CollectReport:
    report = CollectReport()
    for line_no, raw in _lines(source):
        job_id, model, metadata = _parse(raw, line_no, default_model)
        found = index.find(line_no, job_id)
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(line=line_no, custom_id=job_id, status="pending")
        if found is not None:
            row.update(zip(OUTCOME_COLUMNS.split(", "), found, strict=True))
            row["custom_id"] = row["custom_id"] or job_id
        if row["cost_rub"] is None and row["status"] == "succeeded":
            # A record of an earlier version: priced as the run priced.
            cost = prices.rubles(
                model, row["prompt_tokens"] or 0, row["completion_tokens"] or 0
            )
            row["cost_rub"] = None if cost is None else round(cost, 8)
        report.cost_rub += row["cost_rub"] or 0.0
        writer.write(row, metadata)
        report.rows += 1
        report.by_status[row["status"]] = report.by_status.get(row["status"], 0) + 1
        if progress is not None:
            progress(len(raw))
    return report
