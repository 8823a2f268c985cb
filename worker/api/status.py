"""What an HTTP answer means: the status table, Retry-After and error bodies."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import orjson

from worker.errors import (
    AuthError,
    Origin,
    PaymentRequiredError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    WorkerError,
)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# Mira always sends Retry-After with a 429; its docs say to assume 60 s without one.
DEFAULT_RETRY_AFTER_S = 60.0
_MAX_DETAIL_CHARS = 300


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date).

    Returns None when the header is absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def error_detail(body: object, fallback: str) -> str:
    """The message of an error body: Mira's `detail` or OpenAI's `error.message`."""
    detail: object = None
    if isinstance(body, Mapping):
        detail = body.get("detail")
        error = body.get("error")
        if detail is None and isinstance(error, Mapping):
            detail = error.get("message")
        elif detail is None and isinstance(error, str):
            detail = error
    elif isinstance(body, str) and body.strip():
        detail = body.strip()
    if detail is None:
        return fallback
    text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    text = " ".join(text.split())
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[:_MAX_DETAIL_CHARS] + "..."
    return text


def _is_quota_spent(body: object) -> bool:
    if not isinstance(body, Mapping):
        return False
    error = body.get("error")
    if isinstance(error, Mapping) and error.get("code") in ("insufficient_quota",):
        return True
    if isinstance(error, Mapping) and error.get("type") in ("insufficient_quota",):
        return True
    detail = body.get("detail")
    return isinstance(detail, str) and "insufficient_quota" in detail


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: object,
    *,
    request_id: str | None = None,
    now: float | None = None,
) -> WorkerError:
    """Classify a non-2xx response; the table in this function is the spec."""
    detail = error_detail(body, fallback=f"HTTP {status}")
    kw: Origin = {"status": status, "request_id": request_id, "body": body}
    if status == 401:
        return AuthError(detail, **kw)
    if status == 402:
        return PaymentRequiredError(detail, **kw)
    if status == 429:
        if _is_quota_spent(body):
            return PaymentRequiredError(detail, **kw)
        retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
        if retry_after is None:
            retry_after = DEFAULT_RETRY_AFTER_S
        return RateLimitedError(detail, retry_after_s=retry_after, **kw)
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
        return ServerError(detail, retry_after_s=retry_after, **kw)
    if 300 <= status < 400:
        location = headers.get("Location", "")
        where = f" to {location}" if location else ""
        return RequestRejectedError(f"redirect{where} not followed", **kw)
    return RequestRejectedError(detail, **kw)
