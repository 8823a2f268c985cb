"""Tables in: CSV (RFC 4180: a header row, quoted fields with commas, quotes and
newlines inside, an optional UTF-8 byte order mark), TSV, and Parquet, read
row by row in bounded memory. The header is read when the table is opened, so
a template that needs a column the header lacks is refused before any request.

CSV is split into records as it streams: a record ends at a newline outside
quotes (an even count of `"` so far; RFC 4180 doubles a quote inside a field),
so a chunk is looked at once and a standard input pipe works as well as a file.
Parquet is read one record batch at a time, within its row groups.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from worker.errors import ConfigError
from worker.files.jsonl import is_regular_file, read_chunks

_READ_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 2048


class Table(Protocol):
    """A table's header and its rows (1 = the first row after the header)."""

    columns: list[str]
    types: list[Any]  # the columns' Parquet types (None where unknown)

    def rows(self) -> AsyncIterator[tuple[int, dict[str, object]]]: ...

    def rows_after(self, after: int) -> Iterator[tuple[int, dict[str, object]]]: ...

    def count(self) -> int: ...

    def rereadable(self) -> bool: ...


@dataclass(slots=True)
class RowShapeError:
    """A row with more fields than the header has columns."""

    fields: int
    columns: int


class _Records:
    """Text in, whole CSV records out (the text of each, newlines kept)."""

    __slots__ = ("_decoder", "_parts", "_quotes", "_started")

    def __init__(self) -> None:
        # Bytes that are not UTF-8 stay as surrogates: such a row cannot be
        # sent (its request cannot be encoded) and is named, not a crash.
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._parts: list[str] = []
        self._quotes = 0
        self._started = False

    def feed(self, chunk: bytes, *, final: bool = False) -> list[str]:
        text = self._decoder.decode(chunk, final)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        out: list[str] = []
        start = 0
        while (end := text.find("\n", start)) >= 0:
            piece = text[start : end + 1]
            self._quotes += piece.count('"')
            self._parts.append(piece)
            if self._quotes % 2 == 0:
                out.append("".join(self._parts))
                self._parts.clear()
                self._quotes = 0
            start = end + 1
        if start < len(text):
            rest = text[start:]
            self._quotes += rest.count('"')
            self._parts.append(rest)
        if final and self._parts:
            out.append("".join(self._parts))
            self._parts.clear()
        return out


class CsvTable:
    """A CSV or TSV table: its header read when opened, its rows streamed."""

    def __init__(self, fh: BinaryIO, *, delimiter: str, name: str) -> None:
        self._fh = fh
        self._delimiter = delimiter
        self._name = name
        self._head = b""  # what was read off a pipe to find the header
        self.columns = self._read_header()
        self.types: list[Any] = [None] * len(self.columns)

    def _parse(self, records: list[str]) -> list[list[str]]:
        return list(csv.reader(records, delimiter=self._delimiter, strict=False))

    def _read_header(self) -> list[str]:
        """The first record, read from the start of the file (or off the pipe).

        Raises:
            ConfigError: no header, or a header naming a column twice or none.
        """
        records: list[str] = []
        splitter, offset = _Records(), 0
        regular = is_regular_file(self._fh)
        fd = self._fh.fileno()
        while not records:
            chunk = (
                os.pread(fd, _READ_BYTES, offset)
                if regular
                else os.read(fd, _READ_BYTES)
            )
            offset += len(chunk)
            if not regular:
                self._head += chunk
            records = [r for r in splitter.feed(chunk, final=not chunk) if r.strip()]
            if not chunk:
                break
        if not records:
            raise ConfigError(f"{self._name} is empty: a table needs a header row")
        header = [name.strip() for name in self._parse(records[:1])[0]]
        if not all(header):
            raise ConfigError(f"the header of {self._name} has an unnamed column")
        if len(set(header)) != len(header):
            twice = sorted({n for n in header if header.count(n) > 1})
            raise ConfigError(
                f"the header of {self._name} names {', '.join(map(repr, twice))} twice"
            )
        return header

    async def rows(self) -> AsyncIterator[tuple[int, dict[str, object]]]:
        splitter, rows = _Records(), _RowNumbers(self)
        chunks = read_chunks(self._fh)
        if self._head:  # the pipe's first bytes, read to find the header
            for row in rows.of(self._parse(splitter.feed(self._head))):
                yield row
        async for chunk in chunks:
            for row in rows.of(self._parse(splitter.feed(chunk))):
                yield row
        for row in rows.of(self._parse(splitter.feed(b"", final=True))):
            yield row

    def rows_after(self, after: int) -> Iterator[tuple[int, dict[str, object]]]:
        if not is_regular_file(self._fh):
            return
        splitter, rows, offset = _Records(), _RowNumbers(self), 0
        fd = self._fh.fileno()
        while chunk := os.pread(fd, _READ_BYTES, offset):
            offset += len(chunk)
            for number, row in rows.of(self._parse(splitter.feed(chunk))):
                if number > after:
                    yield number, row
        for number, row in rows.of(self._parse(splitter.feed(b"", final=True))):
            if number > after:
                yield number, row

    def rereadable(self) -> bool:
        return is_regular_file(self._fh)

    def count(self) -> int:
        """About how many rows (the newlines, less the header's), for the ETA."""
        if not is_regular_file(self._fh):
            return 0
        fd, offset, lines = self._fh.fileno(), 0, 0
        while chunk := os.pread(fd, _READ_BYTES, offset):
            lines += chunk.count(b"\n")
            offset += len(chunk)
        return max(0, lines - 1)


class _RowNumbers:
    """Records made rows: the header skipped, blank records skipped, fields
    named by the header; a row with more fields than columns says so."""

    __slots__ = ("_columns", "_header_seen", "number")

    def __init__(self, table: CsvTable) -> None:
        self._columns = table.columns
        self._header_seen = False
        self.number = 0

    def of(self, records: list[list[str]]) -> Iterator[tuple[int, dict[str, object]]]:
        for fields in records:
            if not fields:
                continue  # a blank line
            if not self._header_seen:
                self._header_seen = True
                continue
            self.number += 1
            row: dict[str, object] = dict(zip(self._columns, fields, strict=False))
            if len(fields) > len(self._columns):
                row[EXTRA_FIELDS] = RowShapeError(len(fields), len(self._columns))
            yield self.number, row


# The key under which a row with too many fields carries its RowShapeError.
EXTRA_FIELDS = "\x00extra fields"


class ParquetTable:
    """A Parquet file, read one record batch at a time.

    Raises:
        ConfigError: pyarrow is missing, or the file is no Parquet file.
    """

    def __init__(self, fh: BinaryIO, *, name: str) -> None:
        if not is_regular_file(fh):
            raise ConfigError("Parquet cannot be read from a pipe: name the file")
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(
                "Parquet needs pyarrow: pip install 'mira-batch[parquet]'"
            ) from None
        try:
            self._file = pq.ParquetFile(fh)
        except Exception as exc:  # pyarrow's own errors: any means "not Parquet"
            raise ConfigError(f"{name} is not a Parquet file: {exc}") from None
        schema = self._file.schema_arrow
        self.columns = list(schema.names)
        self.types = [field.type for field in schema]

    def _all(self) -> Iterator[tuple[int, dict[str, object]]]:
        number = 0
        for batch in self._file.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, row

    async def rows(self) -> AsyncIterator[tuple[int, dict[str, object]]]:
        for number, row in self._all():
            yield number, row
            if number % _PARQUET_BATCH_ROWS == 0:
                await asyncio.sleep(0)  # let the workers run between batches

    def rows_after(self, after: int) -> Iterator[tuple[int, dict[str, object]]]:
        return ((n, row) for n, row in self._all() if n > after)

    def rereadable(self) -> bool:
        return True

    def count(self) -> int:
        return int(self._file.metadata.num_rows)
