"""A job: the request one input line asks for, and what its records carry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from worker.domain.schema import Schema


@dataclass(frozen=True, slots=True)
class Job:
    """A valid job: what to send and what to copy into its output line."""

    id: str
    model: str
    payload: bytes
    metadata: dict[str, object] | None
    prompt_tokens_est: int
    completion_tokens_est: int
    system_messages: int = 0  # sent as such: Mira drops them
    fingerprint: str = ""  # the request as sent, hashed (CONTRACT section 14)
    line: int = 0  # the input line (or row) it came from
    schema: Schema | None = None  # what its answer must meet, if anything

    @property
    def tokens_est(self) -> int:
        """Estimated tokens the request will cost, for --tpm and validation."""
        return self.prompt_tokens_est + self.completion_tokens_est


def shard_of(job_id: str, shard_count: int) -> int:
    """A stable shard number for an id, the same on every machine and run."""
    digest = hashlib.blake2b(job_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


@dataclass(frozen=True, slots=True)
class Shard:
    """Run only the jobs whose stable hash of id modulo `count` is `index`."""

    index: int
    count: int

    def holds(self, job_id: str) -> bool:
        """True when this shard owns the id."""
        return shard_of(job_id, self.count) == self.index
