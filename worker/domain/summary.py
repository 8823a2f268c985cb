"""The run summary: one typed value, written as `<stem>.summary.json` and read
back by the text summary, the report page, `collect`, the metrics, the exit
path and the next run (CONTRACT section 5).

Its JSON keeps the shape earlier versions wrote: the counts at the top level
and again under `counts`. A summary written by an earlier version reads back
with defaults where a field is missing.
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

COMPLETED = "completed"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Counts(_Part):
    """Jobs by outcome, over the whole input (this shard of it)."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0  # invalid lines included
    skipped: int = 0  # done by earlier runs
    not_attempted: int = 0


class Tokens(_Part):
    """Tokens the answers reported (as counted: untrusted values are 0)."""

    prompt: int = 0
    completion: int = 0
    total: int = 0


class Requests(_Part):
    """Requests sent, and the answers by HTTP status."""

    sent: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)


class Latency(_Part):
    """Seconds from a request's start to its answer."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class ModelCost(_Part):
    """One model's tokens and what they cost, RUB (None: no price known)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None


class Cost(_Part):
    """What the run spent, and at which prices (`book`: the price book itself,
    so that `collect` prices the run's records as the run did, offline)."""

    currency: str = "RUB"
    total: float = 0.0
    prices: str = "list"
    by_model: dict[str, ModelCost] = Field(default_factory=dict)
    note: str | None = None
    book: dict[str, object] | None = None


class Window(_Part):
    """A sliding window of requests the run learned."""

    requests: int
    seconds: float


class Learned(_Part):
    """What the run learned of the account's limits."""

    in_flight: int | None = None
    window: Window | None = None


class Concurrency(_Part):
    """The in-flight limit: the ceiling set, where it ended, how often it fell."""

    ceiling: int = 0
    final: int = 0
    decreases: int = 0


class DailyCap(_Part):
    """When the daily message cap stopped the run, and when it resets."""

    hit_at: str
    resets_at: str


class Wait(_Part):
    """A wait for Mira's daily reset (--until-done): why, and from when until
    when (UTC, ISO 8601)."""

    reason: str
    since: str
    until: str


class Timeline(_Part):
    """The run over time: one row per interval (see report/timeline.py)."""

    step_s: float = 1.0
    columns: list[str] = Field(default_factory=list)
    rows: list[list[float | None]] = Field(default_factory=list)


class RunSummary(_Part):
    """How one run went."""

    counts: Counts = Field(default_factory=Counts)
    invalid: int = 0
    jobs_with_system_messages: int = 0
    deduplicated: int = 0
    reasks: int = 0  # requests that asked again for usable JSON
    invalid_output: int = 0  # jobs failed so, after the last re-ask
    truncated: int = 0  # answers cut at max_tokens
    cache_hits: int = 0
    cache_misses: int = 0
    succeeded_before: int = 0
    failed_before: int = 0
    input_complete: bool = False
    stop_reason: str = COMPLETED
    message: str | None = None
    next_step: str | None = None
    exit_code: int = 0
    cost: Cost = Field(default_factory=Cost)
    tokens: Tokens = Field(default_factory=Tokens)
    requests: Requests = Field(default_factory=Requests)
    retries: dict[str, int] = Field(default_factory=dict)  # "total" and by cause
    latency_s: Latency = Field(default_factory=Latency)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    learned_limits: Learned = Field(default_factory=Learned)
    refusals: dict[str, int] = Field(default_factory=dict)
    daily_messages_on_refusals: int = 0
    # Requests sent, refusals included, per answer written: on Mira each one
    # is one of the day's messages (1.00 is the ideal).
    messages_per_answer: float | None = None
    slots_left_held: int = 0
    daily_cap: DailyCap | None = None
    waits: list[Wait] = Field(default_factory=list)
    daily_messages_left: int | None = None  # as counted, with --daily-reserve
    key_rotations: int = 0
    elapsed_s: float = 0.0
    requests_per_s: float = 0.0
    jobs_per_s: float = 0.0
    files: dict[str, str] = Field(default_factory=dict)
    timeline: Timeline = Field(default_factory=Timeline)

    def to_json(self, *, timeline: bool = True) -> dict[str, object]:
        """The summary file's object: the counts at the top level as well."""
        data = self.model_dump(mode="json", exclude_none=False)
        counts = self.counts.model_dump()
        if self.daily_cap is None:
            del data["daily_cap"]
        if not timeline:
            del data["timeline"]
        return {**counts, **data}

    def to_bytes(self) -> bytes:
        """The summary file's content."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, data: object) -> RunSummary:
        """A summary read back; where an earlier version left a field out, its
        default. The counts are read from `counts`, else from the top level.

        Raises:
            ValueError: not a summary object.
        """
        if not isinstance(data, dict):
            raise ValueError("a summary must be a JSON object")
        counts = data.get("counts")
        if not isinstance(counts, dict):
            counts = {name: data[name] for name in Counts.model_fields if name in data}
        try:
            return cls.model_validate({**data, "counts": counts})
        except ValidationError as exc:
            raise ValueError(
                f"not a run summary: {exc.error_count()} bad fields"
            ) from None

    @classmethod
    def from_bytes(cls, raw: bytes) -> RunSummary:
        """A summary file's content read back.

        Raises:
            ValueError: not JSON, or not a summary.
        """
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return cls.from_json(data)
