"""The report's tables, read from the outcome files in one pass each, in bounded
memory: the slowest answers, the failures by error code, and answers as data
(how they came out by cause, and the first that never became usable JSON)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from worker.files.resume import read_records

SLOWEST_SHOWN = 20
EXAMPLES_SHOWN = 3
MESSAGE_CHARS = 240
INVALID_SHOWN = 5  # the first answers that never became usable JSON
DATA_CODES = ("invalid_output", "truncated")


@dataclass(frozen=True, slots=True)
class InvalidAnswer:
    """An answer that never became usable JSON: its job, its last words, and
    what was wrong with them."""

    job: str
    answer: str
    problems: list[tuple[str, str]]


@dataclass(slots=True)
class FailedCode:
    """The failures of one error code: how many, and the first few."""

    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)  # id, message


@dataclass(slots=True)
class Outcomes:
    """What the tables show."""

    answers: int = 0
    # (latency_s, custom_id, attempts) of the slowest answers, slowest first
    slowest: list[tuple[float, str, int]] = field(default_factory=list)
    failed: dict[str, FailedCode] = field(default_factory=dict)
    # answers by cause: usable JSON at once or after re-asks, kept cut, plain
    causes: dict[str, int] = field(default_factory=dict)
    invalid: list[InvalidAnswer] = field(default_factory=list)

    def add_answer(self, record: Mapping[str, object]) -> None:
        """One results-file record."""
        self._cause(record)
        latency_s = record.get("latency_s")
        if not isinstance(latency_s, int | float) or record.get("cached"):
            return  # a cache hit or a shared answer took no time of its own
        self.answers += 1
        entry = (float(latency_s), str(record.get("custom_id")), _int(record))
        if len(self.slowest) < SLOWEST_SHOWN:
            heapq.heappush(self.slowest, entry)
        elif entry > self.slowest[0]:
            heapq.heapreplace(self.slowest, entry)

    def add_failure(self, record: Mapping[str, object]) -> None:
        """One errors-file record."""
        error = record.get("error")
        if not isinstance(error, dict):
            return
        code = str(error.get("code"))
        if code in DATA_CODES:
            self.causes[code] = self.causes.get(code, 0) + 1
            if code == "invalid_output" and len(self.invalid) < INVALID_SHOWN:
                self.invalid.append(_invalid(record, error))
        failed = self.failed.setdefault(code, FailedCode())
        failed.count += 1
        if len(failed.examples) < EXAMPLES_SHOWN:
            message = str(error.get("message", ""))[:MESSAGE_CHARS]
            failed.examples.append((str(record.get("custom_id")), message))

    def _cause(self, record: Mapping[str, object]) -> None:
        if record.get("truncated"):
            cause = "kept cut at max_tokens"
        elif "parsed" not in record:
            cause = "no schema: the answer as it came"
        elif record.get("reasks"):
            cause = "usable JSON after re-asks"
        else:
            cause = "usable JSON at once"
        self.causes[cause] = self.causes.get(cause, 0) + 1

    def ranked(self) -> list[tuple[float, str, int]]:
        """The slowest answers, slowest first."""
        return sorted(self.slowest, reverse=True)

    def by_count(self) -> list[tuple[str, FailedCode]]:
        """The error codes, most frequent first."""
        return sorted(self.failed.items(), key=lambda item: (-item[1].count, item[0]))


def _invalid(
    record: Mapping[str, object], error: Mapping[str, object]
) -> InvalidAnswer:
    """What an invalid_output record shows: the last answer and its errors."""
    response = record.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    details = error.get("details")
    problems = [
        (str(d.get("path")), str(d.get("message")))
        for d in (details if isinstance(details, list) else [])
        if isinstance(d, dict)
    ]
    if not problems:
        problems = [("$", str(error.get("message", ""))[:MESSAGE_CHARS])]
    return InvalidAnswer(
        str(record.get("custom_id")),
        str(content or "")[:MESSAGE_CHARS],
        problems[:INVALID_SHOWN],
    )


def _int(record: Mapping[str, object]) -> int:
    attempts = record.get("attempts")
    return attempts if isinstance(attempts, int) else 0


def read_outcomes(results: Path, errors: Path) -> Outcomes:
    """The tables of these outcome files (missing files hold nothing; a torn
    line is passed over).

    Raises:
        ConfigError: a file exists but cannot be read.
    """
    outcomes = Outcomes()
    for _, record in read_records(results):
        if record is not None:
            outcomes.add_answer(record)
    for _, record in read_records(errors):
        if record is not None:
            outcomes.add_failure(record)
    return outcomes
