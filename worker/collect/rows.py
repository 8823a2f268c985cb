"""collect's output formats, chosen by the extension or --format: CSV, JSONL,
Parquet (optional, with pyarrow).

A row's columns, in order: the input's own columns (a table's), the columns of
the outcome, the job's metadata, and the answer's parsed JSON. CSV has one
`metadata.<key>` column per top-level metadata key and one `parsed.<name>`
column per top-level schema property (nested values as JSON text); JSONL keeps
`metadata` and `parsed` whole; Parquet keeps the input's column types, types
the parsed columns by their schema (string, number, integer, boolean; nested
as JSON text), and keeps the metadata as JSON text.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from worker.errors import ConfigError

_PARQUET_BATCH = 10_000
FORMATS = ("csv", "jsonl", "parquet")
# The outcome columns' Parquet types (the rest are strings).
_OUTCOME_TYPES = {
    "line": "int64",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "total_tokens": "int64",
    "attempts": "int64",
    "cost_rub": "float64",
    "latency_s": "float64",
}
# A schema property's JSON type, as Parquet stores it.
_JSON_TYPES = {
    "string": "string",
    "number": "float64",
    "integer": "int64",
    "boolean": "bool_",
}


@dataclass(frozen=True, slots=True)
class Layout:
    """A table's columns: the input's (with their Parquet types, when known),
    the outcome's, the metadata keys, and the parsed properties (with their
    JSON Schema types)."""

    outcome: Sequence[str]
    inputs: Sequence[tuple[str, Any]] = ()  # name, pyarrow type (None: string)
    metadata: Sequence[str] = ()
    parsed: Sequence[tuple[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Row:
    """One row: the input's values, the outcome's, the metadata, the parsed JSON."""

    inputs: Mapping[str, object]
    outcome: Mapping[str, object]
    metadata: Mapping[str, object] | None
    parsed: object = None


class RowWriter(Protocol):
    """Writes one collected row."""

    def write(self, row: Row) -> None: ...


def _cell(value: object) -> object:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return orjson.dumps(value).decode()


def _property(parsed: object, name: str) -> object:
    """A top-level property of the parsed JSON (of the first choice's, when
    there were several)."""
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        parsed = parsed[0]
    return parsed.get(name) if isinstance(parsed, dict) else None


class _Csv:
    def __init__(self, fh: io.TextIOBase, layout: Layout) -> None:
        self._layout = layout
        self._out = csv.writer(fh)
        self._out.writerow(
            [
                *(name for name, _ in layout.inputs),
                *layout.outcome,
                *(f"metadata.{key}" for key in layout.metadata),
                *(f"parsed.{name}" for name, _ in layout.parsed),
            ]
        )

    def write(self, row: Row) -> None:
        layout, meta = self._layout, row.metadata or {}
        self._out.writerow(
            [
                *(_cell(row.inputs.get(name)) for name, _ in layout.inputs),
                *(_cell(row.outcome.get(c)) for c in layout.outcome),
                *(_cell(meta.get(k)) for k in layout.metadata),
                *(_cell(_property(row.parsed, name)) for name, _ in layout.parsed),
            ]
        )


class _Jsonl:
    def __init__(self, fh: io.BufferedIOBase, layout: Layout) -> None:
        self._fh = fh
        self._layout = layout

    def write(self, row: Row) -> None:
        line: dict[str, object] = {
            name: row.inputs.get(name) for name, _ in self._layout.inputs
        }
        line.update(row.outcome)
        line["metadata"] = row.metadata
        if self._layout.parsed or row.parsed is not None:
            line["parsed"] = row.parsed
        self._fh.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


class _Parquet:
    def __init__(self, path: Path, layout: Layout) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self._layout = layout
        fields = [(name, kind or pa.string()) for name, kind in layout.inputs]
        fields += [
            (c, getattr(pa, _OUTCOME_TYPES.get(c, "string"))()) for c in layout.outcome
        ]
        fields.append(("metadata", pa.string()))
        fields += [
            (f"parsed.{name}", getattr(pa, _JSON_TYPES.get(kind or "", "string"))())
            for name, kind in layout.parsed
        ]
        self._schema = pa.schema(fields)
        self._batch: list[dict[str, object]] = []
        self._writer = pq.ParquetWriter(str(path), self._schema)

    def write(self, row: Row) -> None:
        layout = self._layout
        out: dict[str, object] = {
            name: row.inputs.get(name) for name, _ in layout.inputs
        }
        out.update(row.outcome)
        out["metadata"] = None if row.metadata is None else _cell(row.metadata)
        for name, kind in layout.parsed:
            value = _property(row.parsed, name)
            out[f"parsed.{name}"] = value if kind in _JSON_TYPES else _cell(value)
        self._batch.append(out)
        if len(self._batch) >= _PARQUET_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            try:
                table = self._pa.Table.from_pylist(self._batch, schema=self._schema)
            except (self._pa.ArrowInvalid, self._pa.ArrowTypeError) as exc:
                raise ConfigError(
                    f"a value does not fit its Parquet column: {exc}"
                ) from None
            self._writer.write_table(table)
            self._batch.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()


def format_of(path: Path, given: str | None = None) -> str:
    """The table format: --format, else the extension of `path`.

    Raises:
        ConfigError: neither names csv, jsonl or parquet.
    """
    kind = given or path.suffix.lower().removeprefix(".")
    if kind not in FORMATS:
        raise ConfigError(
            f"--to {path}: the format must be csv, jsonl or parquet (an extension, "
            "or --format)"
        )
    return kind


@contextmanager
def open_row_writer(path: Path, kind: str, layout: Layout) -> Iterator[RowWriter]:
    """A writer for the format `kind`; written to a temporary file beside
    `path` and renamed at the end, so a failed collect leaves no half file.

    Raises:
        ConfigError: Parquet without pyarrow.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "parquet":
            try:
                parquet = _Parquet(tmp, layout)
            except ImportError:
                raise ConfigError(
                    "Parquet needs pyarrow: pip install 'mira-batch[parquet]'"
                ) from None
            yield parquet
            parquet.close()
        elif kind == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as text:
                yield _Csv(text, layout)
        else:
            with open(tmp, "wb") as binary:
                yield _Jsonl(binary, layout)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
