"""Where jobs come from: an input opened as what it is. A JSONL file of job
lines, or a table (CSV, TSV, Parquet, or JSONL records) whose rows a template
renders into requests. Either way the run reads numbered items and turns each
into a job (or the reason it is none), so resume, fingerprints, dedupe, the
cache, shards and the cost cap work the same on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from worker.config import Settings
from worker.domain.job import Job
from worker.domain.schema import Schema
from worker.errors import ConfigError, InvalidJobError
from worker.files.jobs import Rules, parse_job, read_id, read_line, row_id, row_job
from worker.files.jsonl import (
    MAX_LINE_BYTES,
    Oversized,
    count_lines,
    is_regular_file,
    iter_lines,
    lines_after,
)
from worker.files.tables import EXTRA_FIELDS, CsvTable, ParquetTable, Table
from worker.files.template import Template, load_template

FORMATS = ("jsonl", "csv", "tsv", "parquet")
_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
ROW_IDS = (
    "each job's id is its row number (row-1, row-2, ...): it stays the same only "
    "while rows are only appended to the table; --id-column NAME takes ids from a "
    "column"
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What collect reads of an item: its id, model, metadata and schema, and
    (a table's row) its own columns' values."""

    job_id: str | None
    model: str
    metadata: dict[str, object] | None = None
    schema: Schema | None = None
    values: Mapping[str, object] = field(default_factory=dict)


class JobSource(Protocol):
    """The numbered items of an input, and the job each one asks for."""

    unit: str  # what a number counts in messages: "line" or "row"
    notice: str | None  # said once, when the run or validate starts

    def expected(self) -> int:
        """About how many items (0: unknown), for the ETA."""

    def items(self) -> AsyncIterator[tuple[int, object]]:
        """Every item in order, streamed."""

    def job(self, number: int, item: object) -> Job:
        """The job an item asks for.

        Raises:
            InvalidJobError: it asks for none; carries its number.
        """

    def job_id(self, number: int, item: object) -> str | None:
        """Only an item's id, cheaply (None when it has none that reads)."""

    def unread(self, after: int) -> Iterator[tuple[int, object]]:
        """The items past `after`, read again (nothing for a pipe)."""

    def rereadable(self) -> bool:
        """Whether the input can be read again (a file, not a pipe)."""

    def describe(self, number: int, item: object) -> Facts:
        """An item's facts, as far as it reads (collect)."""

    def columns(self) -> list[tuple[str, Any]]:
        """A table's columns and their Parquet types (None: unknown), as its
        header names them; none for job lines (and for records, whose keys
        collect gathers as it reads them)."""


class JobLines:
    """A JSONL file of job lines (CONTRACT section 4)."""

    unit = "line"
    notice: str | None = None

    def __init__(self, fh: BinaryIO, rules: Rules) -> None:
        self._fh = fh
        self._rules = rules

    def expected(self) -> int:
        return count_lines(self._fh)

    def items(self) -> AsyncIterator[tuple[int, object]]:
        return iter_lines(self._fh)

    def job(self, number: int, item: object) -> Job:
        return parse_job(_line(number, item), number, self._rules)

    def job_id(self, number: int, item: object) -> str | None:
        return None if isinstance(item, Oversized) else read_id(_bytes(item), number)

    def unread(self, after: int) -> Iterator[tuple[int, object]]:
        return lines_after(self._fh, after)

    def rereadable(self) -> bool:
        return is_regular_file(self._fh)

    def describe(self, number: int, item: object) -> Facts:
        if isinstance(item, Oversized):
            return Facts(None, self._rules.model)
        line = read_line(_bytes(item), number, self._rules)
        return Facts(line.job_id, line.model, line.metadata, line.schema)

    def columns(self) -> list[tuple[str, Any]]:
        return []


def _bytes(item: object) -> bytes:
    assert isinstance(item, bytes)
    return item


def _line(number: int, item: object) -> bytes:
    """A line's bytes; a line too long to be a request is invalid as it is."""
    if isinstance(item, Oversized):
        raise InvalidJobError(
            f"the line is {item.size:,} bytes; Mira refuses a request over 2 MiB "
            "(413): it was not read further, nor sent",
            line_no=number,
            job_id=None,
        )
    return _bytes(item)


class TableRows:
    """A table's rows, each rendered by the template into its request."""

    unit = "row"
    notice: str | None

    def __init__(
        self, table: Table, template: Template, rules: Rules, id_column: str | None
    ) -> None:
        self.table = table
        self._template = template
        self._rules = rules
        self._id_column = id_column
        self.notice = ROW_IDS if id_column is None else None

    def expected(self) -> int:
        return self.table.count()

    async def items(self) -> AsyncIterator[tuple[int, object]]:
        async for number, row in self.table.rows():
            yield number, row

    def job(self, number: int, item: object) -> Job:
        assert isinstance(item, dict)
        return row_job(
            number, item, self._template, self._rules, id_column=self._id_column
        )

    def job_id(self, number: int, item: object) -> str | None:
        assert isinstance(item, dict)
        return row_id(number, item, self._id_column)

    def unread(self, after: int) -> Iterator[tuple[int, object]]:
        return iter(self.table.rows_after(after))

    def rereadable(self) -> bool:
        return self.table.rereadable()

    def describe(self, number: int, item: object) -> Facts:
        assert isinstance(item, dict)
        job_id = row_id(number, item, self._id_column)
        if EXTRA_FIELDS in item:
            item = {k: v for k, v in item.items() if k != EXTRA_FIELDS}
        return Facts(job_id, self._rules.model, None, self._rules.schema, item)

    def columns(self) -> list[tuple[str, Any]]:
        return list(zip(self.table.columns, self.table.types, strict=True))


class RecordLines:
    """A JSONL file of plain records (one object a line), rendered as rows."""

    unit = "row"
    notice: str | None

    def __init__(
        self, fh: BinaryIO, template: Template, rules: Rules, id_column: str | None
    ) -> None:
        self._fh = fh
        self._template = template
        self._rules = rules
        self._id_column = id_column
        self.notice = ROW_IDS if id_column is None else None

    def expected(self) -> int:
        return count_lines(self._fh)

    def items(self) -> AsyncIterator[tuple[int, object]]:
        return iter_lines(self._fh)

    def job(self, number: int, item: object) -> Job:
        record = self.record(number, item)
        return row_job(
            number, record, self._template, self._rules, id_column=self._id_column
        )

    def record(self, number: int, item: object) -> dict[str, object]:
        """A line's record.

        Raises:
            InvalidJobError: too long, not JSON, or not an object.
        """
        raw = _line(number, item)
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidJobError(
                f"not valid JSON: {exc}", line_no=number, job_id=None
            ) from None
        if not isinstance(record, dict):
            raise InvalidJobError(
                "a record must be a JSON object",
                line_no=number,
                job_id=None,
            )
        return record

    def job_id(self, number: int, item: object) -> str | None:
        try:
            return row_id(number, self.record(number, item), self._id_column)
        except InvalidJobError:
            return None

    def unread(self, after: int) -> Iterator[tuple[int, object]]:
        return lines_after(self._fh, after)

    def rereadable(self) -> bool:
        return is_regular_file(self._fh)

    def describe(self, number: int, item: object) -> Facts:
        try:
            record = self.record(number, item)
        except InvalidJobError:
            return Facts(None, self._rules.model)
        job_id = row_id(number, record, self._id_column)
        return Facts(job_id, self._rules.model, None, self._rules.schema, record)

    def columns(self) -> list[tuple[str, Any]]:
        return []


def input_format(source: str, given: str | None) -> str:
    """The input's format: --input-format, else its extension (JSONL for
    standard input and any other extension)."""
    if given is not None:
        return given
    if source == "-":
        return "jsonl"
    return _BY_SUFFIX.get(Path(source).suffix.lower(), "jsonl")


def open_source(
    fh: BinaryIO, source: str, settings: Settings, rules: Rules
) -> JobSource:
    """The input as what it is; a table's header checked against the template.

    Raises:
        ConfigError: a table without --template, a template that cannot load or
            that uses a column the header lacks, --id-column not in the header,
            or a table that cannot be read.
    """
    kind = input_format(source, settings.input_format)
    template = None if settings.template is None else load_template(settings.template)
    if template is None:
        if kind != "jsonl":
            raise ConfigError(
                f"{source} is a table ({kind}): its rows need a prompt template, "
                "--template FILE (MIRA_TEMPLATE)"
            )
        return JobLines(fh, rules)
    if kind == "jsonl":
        return RecordLines(fh, template, rules, settings.id_column)
    name = "standard input" if source == "-" else source
    table: Table = (
        ParquetTable(fh, name=name)
        if kind == "parquet"
        else CsvTable(fh, delimiter="\t" if kind == "tsv" else ",", name=name)
    )
    template.check_columns(table.columns, source=name)
    if settings.id_column is not None and settings.id_column not in table.columns:
        raise ConfigError(
            f"--id-column {settings.id_column!r} is not a column of {name} (its "
            f"columns: {', '.join(map(repr, table.columns))})"
        )
    return TableRows(table, template, rules, settings.id_column)


__all__ = ["FORMATS", "MAX_LINE_BYTES", "JobSource", "input_format", "open_source"]
