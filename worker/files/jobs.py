"""One input line -> one Job: both line shapes, validated (CONTRACT section 4)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from worker.errors import InvalidJobError
from worker.files.shapes import (
    body_from_line,
    check_messages,
    load_object,
    read_job_id,
)

# Mira caps output at 16,384 tokens; a job that says nothing is assumed to ask for less.
DEFAULT_COMPLETION_ESTIMATE = 256


@dataclass(frozen=True, slots=True)
class Job:
    """A valid job: what to send and what to copy into its output line."""

    id: str
    model: str
    payload: bytes
    metadata: dict[str, Any] | None
    prompt_tokens_est: int
    completion_tokens_est: int
    system_messages: int = 0  # sent as such: Mira drops them
    fingerprint: str = ""  # the request as sent, hashed (CONTRACT section 14)

    @property
    def tokens_est(self) -> int:
        """Estimated tokens the request will cost, for --tpm and validation."""
        return self.prompt_tokens_est + self.completion_tokens_est


def shard_of(job_id: str, shard_count: int) -> int:
    """A stable shard number for an id, the same on every machine and run."""
    digest = hashlib.blake2b(job_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """As Mira counts (and bills) a prompt: whitespace-separated words."""
    words = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                words += len(text.split()) if isinstance(text, str) else 0
    return words


def fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System messages folded into the first user message, which Mira keeps
    (it drops system messages before the model sees them)."""
    system = [m for m in messages if m.get("role") == "system"]
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    first_user = next((m for m in rest if m.get("role") == "user"), None)
    if not system or first_user is None or not isinstance(first_user["content"], str):
        return messages
    texts = [m["content"] for m in system if isinstance(m.get("content"), str)]
    first_user["content"] = "\n\n".join([*texts, first_user["content"]])
    return rest


@dataclass(frozen=True, slots=True)
class Line:
    """What an input line says, as far as it reads: its id, model and metadata,
    and the request body it asks for, or why it is no job."""

    job_id: str | None
    model: str
    metadata: dict[str, Any] | None
    body: dict[str, Any] | None = None
    error: InvalidJobError | None = None


def read_line(
    raw: bytes, line_no: int, *, default_model: str, system_as_user: bool = False
) -> Line:
    """The one reader of an input line: run and validate build the job from it
    (parse_job), collect reads its id, model and metadata."""
    try:
        obj = load_object(raw, line_no)
    except InvalidJobError as exc:
        return Line(None, default_model, None, error=exc)
    job_id, problem = read_job_id(obj, line_no)
    metadata = obj.get("metadata")
    body, body_problem = body_from_line(obj)
    model = (body or obj).get("model")
    model = model if isinstance(model, str) and model else default_model
    problem = problem or body_problem
    if problem is None and body is not None:
        problem = check_messages(body.get("messages"))
    if metadata is not None and not isinstance(metadata, dict):
        problem = problem or "metadata must be an object"
        metadata = None
    if problem is not None or body is None or job_id is None:
        error = InvalidJobError(
            problem or "invalid job", line_no=line_no, job_id=job_id
        )
        return Line(job_id, model, metadata, error=error)
    if system_as_user:
        body["messages"] = fold_system(body["messages"])
    return Line(job_id, model, metadata, body)


def parse_job(
    raw: bytes, line_no: int, *, default_model: str, system_as_user: bool = False
) -> Job:
    """Parse one non-blank input line into the request it asks for.

    Raises:
        InvalidJobError: the line cannot become a request; carries its line number.
    """
    line = read_line(
        raw, line_no, default_model=default_model, system_as_user=system_as_user
    )
    if line.error is not None:
        raise line.error
    assert line.job_id is not None
    assert line.body is not None
    return _job(
        line.job_id, line.body, line.metadata, line_no, default_model=default_model
    )


def _job(
    job_id: str,
    body: dict[str, Any],
    metadata: dict[str, Any] | None,
    line_no: int,
    *,
    default_model: str,
) -> Job:
    """The request a valid line asks for.

    Raises:
        InvalidJobError: a bad model, or a body that cannot be sent or recorded.
    """
    model = body.get("model")
    if model is None:
        body["model"] = model = default_model
    elif not isinstance(model, str) or not model:
        raise InvalidJobError("model must be a string", line_no=line_no, job_id=job_id)
    # A batch client wants one JSON body, never a stream without usage.
    body.pop("stream", None)
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    completion_est = (
        max_tokens
        if isinstance(max_tokens, int) and max_tokens > 0
        else DEFAULT_COMPLETION_ESTIMATE
    )
    try:
        payload = orjson.dumps(body)
        # Sorted keys, no whitespace: the same request gives the same hash
        # however its line spelled it.
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        if metadata is not None:
            # Checked as it will sit in the output line, one level down.
            orjson.dumps({"metadata": metadata})
    except orjson.JSONEncodeError as exc:
        raise InvalidJobError(
            f"cannot be sent or recorded: {exc}", line_no=line_no, job_id=job_id
        ) from None
    return Job(
        id=job_id,
        model=model,
        payload=payload,
        metadata=metadata,
        prompt_tokens_est=estimate_prompt_tokens(body["messages"]),
        completion_tokens_est=completion_est,
        system_messages=sum(1 for m in body["messages"] if m["role"] == "system"),
        fingerprint=hashlib.sha256(canonical).hexdigest(),
    )


@dataclass(frozen=True, slots=True)
class Shard:
    """Run only the jobs whose stable hash of id modulo `count` is `index`."""

    index: int
    count: int

    def holds(self, job_id: str) -> bool:
        """True when this shard owns the id."""
        return shard_of(job_id, self.count) == self.index
