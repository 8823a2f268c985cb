"""The results and errors files, loaded into an on-disk index (the stdlib's
sqlite3) keyed by job id, so collect can join them to the input in input order."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from worker.files.resume import read_records

OUTCOME_COLUMNS = (
    "custom_id, status, content, finish_reason, model, prompt_tokens, "
    "completion_tokens, total_tokens, cost_rub, error_code, error_message, "
    "attempts, latency_s, request_id, request_fingerprint, parsed"
)
_BATCH = 5_000


def as_object(value: object) -> dict[str, object]:
    """The value if it is a JSON object, else an empty one: records are untrusted."""
    return value if isinstance(value, dict) else {}


def _outcome(record: dict[str, object], failed: bool) -> tuple[Any, ...]:
    """One index row from a results or errors record."""
    response = as_object(record.get("response"))
    body = as_object(response.get("body"))
    choices = body.get("choices")
    choice = as_object(choices[0] if isinstance(choices, list) and choices else None)
    message = as_object(choice.get("message"))
    usage = as_object(body.get("usage"))
    error = as_object(record.get("error"))
    code = error.get("code")
    status = "failed" if failed else "succeeded"
    if code == "invalid_input":
        status = "invalid"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        content = orjson.dumps(content).decode()
    return (
        record.get("custom_id"),
        status,
        content,
        choice.get("finish_reason"),
        body.get("model"),
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(usage.get("total_tokens")),
        _amount(record.get("cost_rub")),
        code,
        error.get("message"),
        record.get("attempts"),
        record.get("latency_s"),
        response.get("request_id"),
        record.get("request_fingerprint"),
        orjson.dumps(record["parsed"]).decode() if "parsed" in record else None,
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _amount(value: object) -> float | None:
    """What a record says its job cost (records of earlier versions say none)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


class OutcomeIndex:
    """The results and errors, on disk, looked up by id or by invalid line."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / "index.sqlite3")
        self._db.execute(
            f"CREATE TABLE outcome ({OUTCOME_COLUMNS}, line INTEGER, matched INTEGER "
            "DEFAULT 0)"
        )

    def load(self, results: Path, errors: Path) -> None:
        """Index every record of both files."""
        for path, failed in ((results, False), (errors, True)):
            batch: list[tuple[Any, ...]] = []
            for _, record in read_records(path):
                if record is None:
                    continue  # a torn last line: that job is pending
                row = _outcome(record, failed)
                # Only a line that is no job is found by its number: a job is
                # found by its id, wherever its line has moved since.
                line = _count(record.get("line")) if row[1] == "invalid" else None
                batch.append((*row, line))
                if len(batch) >= _BATCH:
                    self._insert(batch)
            self._insert(batch)
        self._db.execute("CREATE INDEX by_id ON outcome (custom_id)")
        self._db.execute("CREATE INDEX by_line ON outcome (line)")

    def _insert(self, batch: list[tuple[Any, ...]]) -> None:
        self._db.executemany(
            f"INSERT INTO outcome ({OUTCOME_COLUMNS}, line) "
            f"VALUES ({', '.join('?' * 17)})",
            batch,
        )
        batch.clear()

    def find(
        self, line_no: int, job_id: str | None, *, claim: bool = False
    ) -> tuple[Any, ...] | None:
        """The outcome of an input line: its invalid record, else its id's;
        `claim` marks it as belonging to the input."""
        cur = self._db.execute(
            f"SELECT rowid, {OUTCOME_COLUMNS} FROM outcome WHERE line = ?", (line_no,)
        )
        row = cur.fetchone()
        if row is None and job_id is not None:
            cur = self._db.execute(
                f"SELECT rowid, {OUTCOME_COLUMNS} FROM outcome WHERE custom_id = ? "
                "AND line IS NULL",
                (job_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        if claim:
            self._db.execute(
                "UPDATE outcome SET matched = 1 WHERE rowid = ?", (row[0],)
            )
        return tuple(row[1:])

    def unmatched(self) -> tuple[int, str | None]:
        """Records no input line claimed, and one of their ids."""
        count, example = self._db.execute(
            "SELECT count(*), min(custom_id) FROM outcome WHERE matched = 0"
        ).fetchone()
        return count, example

    def close(self) -> None:
        """Drop the index."""
        self._db.close()
