"""The report's tables, read from the outcome files in one pass each, in bounded
memory: the slowest answers, and the failures by error code."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from worker.files.resume import read_records

SLOWEST_SHOWN = 20
EXAMPLES_SHOWN = 3
MESSAGE_CHARS = 240


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

    def add_answer(self, record: Mapping[str, object]) -> None:
        """One results-file record."""
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
        failed = self.failed.setdefault(code, FailedCode())
        failed.count += 1
        if len(failed.examples) < EXAMPLES_SHOWN:
            message = str(error.get("message", ""))[:MESSAGE_CHARS]
            failed.examples.append((str(record.get("custom_id")), message))

    def ranked(self) -> list[tuple[float, str, int]]:
        """The slowest answers, slowest first."""
        return sorted(self.slowest, reverse=True)

    def by_count(self) -> list[tuple[str, FailedCode]]:
        """The error codes, most frequent first."""
        return sorted(self.failed.items(), key=lambda item: (-item[1].count, item[0]))


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
