"""collect's output formats, chosen by the extension: CSV, JSONL, Parquet (optional).

CSV has one `metadata.<key>` column per top-level metadata key; JSONL and Parquet
keep the metadata as one object (Parquet: its JSON text).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson

from worker.errors import ConfigError

_PARQUET_BATCH = 10_000


class RowWriter(Protocol):
    """Writes one collected row."""

    def write(self, row: dict[str, Any], metadata: dict[str, Any] | None) -> None: ...


def _cell(value: object) -> object:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return orjson.dumps(value).decode()


class _Csv:
    def __init__(self, fh: io.TextIOBase, columns: Sequence[str], keys: list[str]):
        self._columns = columns
        self._keys = keys
        self._out = csv.writer(fh)
        self._out.writerow([*columns, *(f"metadata.{key}" for key in keys)])

    def write(self, row: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        meta = metadata or {}
        self._out.writerow(
            [
                *(row[c] for c in self._columns),
                *(_cell(meta.get(k)) for k in self._keys),
            ]
        )


class _Jsonl:
    def __init__(self, fh: io.BufferedIOBase) -> None:
        self._fh = fh

    def write(self, row: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        self._fh.write(
            orjson.dumps(
                {**row, "metadata": metadata}, option=orjson.OPT_APPEND_NEWLINE
            )
        )


class _Parquet:
    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        import pyarrow as pa  # type: ignore[import-not-found]
        import pyarrow.parquet as pq  # type: ignore[import-not-found]

        self._pa = pa
        self._columns = [*columns, "metadata"]
        self._batch: list[dict[str, Any]] = []
        types = {c: pa.string() for c in self._columns}
        for c in (
            "line",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "attempts",
        ):
            types[c] = pa.int64()
        for c in ("cost_rub", "latency_s"):
            types[c] = pa.float64()
        self._schema = pa.schema([(c, types[c]) for c in self._columns])
        self._writer = pq.ParquetWriter(str(path), self._schema)

    def write(self, row: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        meta = None if metadata is None else orjson.dumps(metadata).decode()
        self._batch.append({**row, "metadata": meta})
        if len(self._batch) >= _PARQUET_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            table = self._pa.Table.from_pylist(self._batch, schema=self._schema)
            self._writer.write_table(table)
            self._batch.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()


@contextmanager
def open_row_writer(
    path: Path, columns: Sequence[str], metadata_keys: list[str]
) -> Iterator[RowWriter]:
    """A writer for the format `path`'s extension names; written to a temporary
    file beside it and renamed at the end, so a failed collect leaves no half file.

    Raises:
        ConfigError: an unknown extension, or Parquet without pyarrow.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".parquet"):
        raise ConfigError(
            f"--to {path}: the extension must be .csv, .jsonl or .parquet"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if suffix == ".parquet":
            try:
                parquet = _Parquet(tmp, columns)
            except ImportError:
                raise ConfigError(
                    "Parquet needs pyarrow: pip install 'mira-batch[parquet]'"
                ) from None
            yield parquet
            parquet.close()
        elif suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as text:
                yield _Csv(text, columns, metadata_keys)
        else:
            with open(tmp, "wb") as binary:
                yield _Jsonl(binary)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
