"""Output lines in the OpenAI Batch output shape (CONTRACT section 5), built in
one place from the job they are for."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from worker.domain.answer import Answer
from worker.domain.job import Job
from worker.errors import (
    InvalidJobError,
    InvalidOutputError,
    JobError,
    KeyInPromptError,
    RequestRejectedError,
    WorkerError,
)
from worker.files.writer import ResultWriter

MAX_PROBLEMS_KEPT = 20  # an invalid answer's validation errors, in its record


class RecordIds:
    """Unique record ids: a random prefix per run and a counter (cheaper than uuid4)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = f"batch_req_{secrets.token_hex(6)}_"
        self._counter = itertools.count(1)

    def next(self) -> str:
        """A new record id."""
        return f"{self._prefix}{next(self._counter)}"


@dataclass(frozen=True, slots=True)
class Effort:
    """What a job's outcome took: its requests, the last one's latency, and
    what they cost (RUB, as the run priced each answer; None when an answer
    came before Mira's prices were known)."""

    attempts: int = 0
    latency_s: float = 0.0
    cost_rub: float | None = 0.0


NO_EFFORT = Effort()  # an outcome that sent nothing: cached, or shared


@dataclass(frozen=True, slots=True)
class Outcome:
    """A job's written outcome, its answer or its error, and what its record
    added (parsed JSON), for the jobs that asked the same request (--dedupe):
    `leader` is the job that asked it."""

    leader: str
    answer: Answer | None = None
    error: JobError | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


def error_code(error: WorkerError) -> str:
    """The errors file's `error.code`; a refusal is named by its status (`http_404`)."""
    if isinstance(error, KeyInPromptError):
        return error.code
    if isinstance(error, InvalidJobError):
        return "invalid_input"
    if isinstance(error, RequestRejectedError) and error.status is not None:
        return f"http_{error.status}"
    return error.code


def _tail(
    record: dict[str, object],
    job: Job,
    effort: Effort,
    deduplicated_from: str | None,
    extra: Mapping[str, object] | None,
) -> dict[str, object]:
    """What every record of a job carries after its answer or error."""
    if job.metadata is not None:
        record["metadata"] = job.metadata
    record["attempts"] = effort.attempts
    record["request_fingerprint"] = job.fingerprint
    record["cost_rub"] = effort.cost_rub
    if deduplicated_from is not None:
        record["deduplicated_from"] = deduplicated_from
    if extra:
        record.update(extra)
    return record


class Recorder:
    """The one place outcome records are built and handed to the writer."""

    __slots__ = ("_ids", "_writer")

    def __init__(self, writer: ResultWriter) -> None:
        self._writer = writer
        self._ids = RecordIds()

    def answer(
        self,
        job: Job,
        answer: Answer,
        effort: Effort,
        *,
        deduplicated_from: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Write a job's answer; `extra` keys follow the record's own
        (`cached`, and what an answer check adds).

        Raises:
            OutputError: the results file cannot be written; the run stops.
            orjson.JSONEncodeError: the answer cannot be serialised.
        """
        record: dict[str, object] = {
            "id": self._ids.next(),
            "custom_id": job.id,
            "response": {
                "status_code": answer.status,
                "request_id": answer.request_id,
                "body": answer.body,
            },
            "error": None,
            "latency_s": round(effort.latency_s, 4),
        }
        if answer.streamed:
            record["streamed"] = True
        self._writer.write_result(_tail(record, job, effort, deduplicated_from, extra))

    def failure(
        self,
        job: Job,
        error: WorkerError,
        effort: Effort,
        *,
        deduplicated_from: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Write a job's failure; `response` holds the last HTTP status and
        body, if any.

        Raises:
            OutputError: the errors file cannot be written; the run stops.
        """
        record = _error_record(self._ids.next(), job.id, error)
        record["line"] = job.line
        self._writer.write_error(_tail(record, job, effort, deduplicated_from, extra))

    def invalid(self, error: InvalidJobError, *, job_id: str | None) -> None:
        """Write an input line's failure to become a job.

        Raises:
            OutputError: the errors file cannot be written; the run stops.
        """
        record = _error_record(self._ids.next(), job_id, error)
        record["line"] = error.line_no
        record["request_fingerprint"] = None  # no request was ever built
        self._writer.write_error(record)


def _error_record(
    record_id: str, job_id: str | None, error: WorkerError
) -> dict[str, object]:
    response = None
    if error.status is not None:
        response = {
            "status_code": error.status,
            "request_id": error.request_id,
            "body": error.body,
        }
    said: dict[str, object] = {"code": error_code(error), "message": error.message}
    if isinstance(error, InvalidOutputError) and error.problems:
        said["details"] = [
            {"path": path, "message": message}
            for path, message in error.problems[:MAX_PROBLEMS_KEPT]
        ]
    return {
        "id": record_id,
        "custom_id": job_id,
        "response": response,
        "error": said,
    }
