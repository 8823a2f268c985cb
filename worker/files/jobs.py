"""One input line -> one Job: both line shapes, validated (CONTRACT section 4)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from worker.errors import InvalidJobError

MAX_MESSAGES = 200
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
# Keys of a simple line that are ours, not chat parameters to send.
_SIMPLE_OWN_KEYS = frozenset({"id", "custom_id", "prompt", "system", "metadata"})
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

    @property
    def tokens_est(self) -> int:
        """Estimated tokens the request will cost, for --tpm and validation."""
        return self.prompt_tokens_est + self.completion_tokens_est


def shard_of(job_id: str, shard_count: int) -> int:
    """A stable shard number for an id, the same on every machine and run."""
    digest = hashlib.blake2b(job_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """About four characters a token, plus the per-message framing."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                chars += len(text) if isinstance(text, str) else 0
    return chars // 4 + 4 * len(messages) + 3


def read_job_id(obj: dict[str, Any], line_no: int) -> tuple[str | None, str | None]:
    """(id, problem): the line's id, else line-N; a problem if it is unreadable."""
    raw = obj.get("custom_id", obj.get("id"))
    if raw is None:
        return f"line-{line_no}", None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return None, "the id must be a string"
    text = str(raw)
    if not text.strip():
        return None, "the id is empty"
    return text, None


def _check_messages(messages: object) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    if len(messages) > MAX_MESSAGES:
        return f"{len(messages)} messages; Mira accepts at most {MAX_MESSAGES}"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{index}] is not an object"
        role = message.get("role")
        if role not in _ROLES:
            return f"messages[{index}].role must be one of {sorted(_ROLES)}"
        content = message.get("content")
        if not isinstance(content, (str, list)):
            return f"messages[{index}].content must be a string"
    return None


def _body_from_line(obj: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if "body" in obj or "method" in obj or "url" in obj:
        method = obj.get("method", "POST")
        url = obj.get("url", "/v1/chat/completions")
        if not isinstance(method, str) or method.upper() != "POST":
            return None, "method must be POST"
        if not isinstance(url, str) or not url.rstrip("/").endswith(
            "/chat/completions"
        ):
            return None, "url must be /v1/chat/completions"
        body = obj.get("body")
        if not isinstance(body, dict):
            return None, "body must be an object"
        return body, None  # freshly parsed: ours to change
    body = {k: v for k, v in obj.items() if k not in _SIMPLE_OWN_KEYS}
    if "messages" in body:
        return body, None
    prompt = obj.get("prompt")
    if prompt is None:
        return None, "no messages or prompt"
    if not isinstance(prompt, str) or not prompt:
        return None, "prompt must be a non-empty string"
    system = obj.get("system")
    messages: list[dict[str, Any]] = []
    if system is not None:
        if not isinstance(system, str):
            return None, "system must be a string"
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    body["messages"] = messages
    return body, None


def _load_object(raw: bytes, line_no: int) -> dict[str, Any]:
    """The line as a JSON object.

    Raises:
        InvalidJobError: not UTF-8, not JSON, or not an object.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJobError(
                "line is not valid UTF-8", line_no=line_no, job_id=None
            ) from None
        raise InvalidJobError(
            f"not valid JSON: {exc}", line_no=line_no, job_id=None
        ) from None
    if not isinstance(obj, dict):
        raise InvalidJobError(
            f"a job must be a JSON object, not {type(obj).__name__}",
            line_no=line_no,
            job_id=None,
        )
    return obj


def parse_job(raw: bytes, line_no: int, *, default_model: str) -> Job:
    """Parse one non-blank input line.

    Raises:
        InvalidJobError: the line cannot become a request; carries its line number.
    """
    obj = _load_object(raw, line_no)
    job_id, problem = read_job_id(obj, line_no)
    body: dict[str, Any] | None = None
    if problem is None:
        body, problem = _body_from_line(obj)
    if problem is None and body is not None:
        problem = _check_messages(body.get("messages"))
    metadata = obj.get("metadata")
    if problem is None and metadata is not None and not isinstance(metadata, dict):
        problem = "metadata must be an object"
    if problem is not None or body is None or job_id is None:
        raise InvalidJobError(problem or "invalid job", line_no=line_no, job_id=job_id)
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
    )


@dataclass(frozen=True, slots=True)
class Shard:
    """Run only the jobs whose stable hash of id modulo `count` is `index`."""

    index: int
    count: int

    def holds(self, job_id: str) -> bool:
        """True when this shard owns the id."""
        return shard_of(job_id, self.count) == self.index
