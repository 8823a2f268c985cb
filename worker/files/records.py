"""Output lines in the OpenAI Batch output shape (CONTRACT section 5)."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from worker.errors import (
    InvalidJobError,
    JobError,
    RequestRejectedError,
    WorkerError,
)
from worker.files.writer import ResultWriter


class RecordIds:
    """Unique record ids: a random prefix per run and a counter (cheaper than uuid4)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = f"batch_req_{secrets.token_hex(6)}_"
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A new record id."""
        return f"{self._prefix}{next(self._counter)}"


def success_record(
    record_id: str,
    job_id: str,
    *,
    status: int,
    request_id: str | None,
    body: dict[str, Any],
    metadata: dict[str, Any] | None,
    attempts: int,
    latency_s: float,
    streamed: bool = False,
    fingerprint: str | None = None,
    deduplicated_from: str | None = None,
    cached: bool = False,
) -> dict[str, Any]:
    """A results-file line."""
    record: dict[str, Any] = {
        "id": record_id,
        "custom_id": job_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }
    if metadata is not None:
        record["metadata"] = metadata
    record["attempts"] = attempts
    record["latency_s"] = round(latency_s, 4)
    record["request_fingerprint"] = fingerprint
    if streamed:
        record["streamed"] = True
    if deduplicated_from is not None:
        record["deduplicated_from"] = deduplicated_from
    if cached:
        record["cached"] = True
    return record


def error_record(
    record_id: str,
    job_id: str | None,
    error: WorkerError,
    *,
    metadata: dict[str, Any] | None,
    attempts: int | None = None,
    line_no: int | None = None,
    fingerprint: str | None = None,
    deduplicated_from: str | None = None,
) -> dict[str, Any]:
    """An errors-file line; `response` holds the last HTTP status and body, if any."""
    response = None
    if error.status is not None:
        response = {
            "status_code": error.status,
            "request_id": error.request_id,
            "body": error.body,
        }
    record: dict[str, Any] = {
        "id": record_id,
        "custom_id": job_id,
        "response": response,
        "error": {"code": error_code(error), "message": error.message},
    }
    if line_no is not None:
        record["line"] = line_no
    if metadata is not None:
        record["metadata"] = metadata
    if attempts is not None:
        record["attempts"] = attempts
    record["request_fingerprint"] = fingerprint  # none for an invalid line
    if deduplicated_from is not None:
        record["deduplicated_from"] = deduplicated_from
    return record


def error_code(error: WorkerError) -> str:
    """The errors file's `error.code`; a refusal is named by its status (`http_404`)."""
    if isinstance(error, InvalidJobError):
        return "invalid_input"
    if isinstance(error, RequestRejectedError) and error.status is not None:
        return f"http_{error.status}"
    return error.code


@dataclass(frozen=True, slots=True)
class Answer:
    """A 2xx answer as it is recorded."""

    status: int
    request_id: str | None
    body: dict[str, Any]
    streamed: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """A job's written outcome, its answer or its error, for the jobs that asked
    the same request (--dedupe): `leader` is the job that asked it."""

    leader: str
    answer: Answer | None = None
    error: JobError | None = None


class Recorder:
    """The one place outcome records are built and handed to the writer."""

    __slots__ = ("_ids", "_writer")

    def __init__(self, writer: ResultWriter) -> None:
        self._writer = writer
        self._ids = RecordIds()

    def answer(
        self,
        job_id: str,
        answer: Answer,
        *,
        metadata: dict[str, Any] | None,
        attempts: int,
        latency_s: float,
        fingerprint: str | None = None,
        deduplicated_from: str | None = None,
        cached: bool = False,
    ) -> None:
        """Write a job's answer.

        Raises:
            OutputError: the results file cannot be written; the run stops.
            orjson.JSONEncodeError: the answer cannot be serialised.
        """
        self._writer.write_result(
            success_record(
                self._ids.next(),
                job_id,
                status=answer.status,
                request_id=answer.request_id,
                body=answer.body,
                metadata=metadata,
                attempts=attempts,
                latency_s=latency_s,
                streamed=answer.streamed,
                fingerprint=fingerprint,
                deduplicated_from=deduplicated_from,
                cached=cached,
            )
        )

    def failure(
        self,
        job_id: str | None,
        error: WorkerError,
        *,
        metadata: dict[str, Any] | None = None,
        attempts: int | None = None,
        line_no: int | None = None,
        fingerprint: str | None = None,
        deduplicated_from: str | None = None,
    ) -> None:
        """Write a job's (or an invalid line's) failure.

        Raises:
            OutputError: the errors file cannot be written; the run stops.
        """
        self._writer.write_error(
            error_record(
                self._ids.next(),
                job_id,
                error,
                metadata=metadata,
                attempts=attempts,
                line_no=line_no,
                fingerprint=fingerprint,
                deduplicated_from=deduplicated_from,
            )
        )
