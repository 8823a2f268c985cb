"""The status table and Retry-After parsing: the tables here are the spec."""

from __future__ import annotations

import email.utils

import pytest

from worker.api.status import (
    DEFAULT_RETRY_AFTER_S,
    error_detail,
    error_for_status,
    parse_retry_after,
)
from worker.errors import (
    AuthError,
    PaymentRequiredError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    WorkerError,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (401, {}, {"detail": "Invalid API key"}, AuthError),
        (402, {}, {"detail": "Insufficient balance"}, PaymentRequiredError),
        (429, {"Retry-After": "5"}, {"detail": "slow down"}, RateLimitedError),
        (
            429,
            {},
            {"error": {"code": "insufficient_quota", "message": "spent"}},
            PaymentRequiredError,
        ),
        (
            429,
            {},
            {"error": {"type": "insufficient_quota", "message": "x"}},
            PaymentRequiredError,
        ),
        (408, {}, {"detail": "timeout"}, ServerError),
        (409, {}, {"detail": "conflict"}, ServerError),
        (500, {}, {"detail": "boom"}, ServerError),
        (502, {}, "<html>bad gateway</html>", ServerError),
        (503, {}, {"detail": "unavailable"}, ServerError),
        (504, {}, None, ServerError),
        (599, {}, None, ServerError),
        (400, {}, {"detail": "Unknown model"}, RequestRejectedError),
        (403, {}, {"detail": "plan"}, RequestRejectedError),
        (404, {}, {"detail": "Not Found"}, RequestRejectedError),
        (410, {}, {"detail": "gone"}, RequestRejectedError),
        (413, {}, {"detail": "too large"}, RequestRejectedError),
        (422, {}, {"detail": "too many messages"}, RequestRejectedError),
        (418, {}, None, RequestRejectedError),
        (301, {"Location": "https://elsewhere.example/v1"}, None, RequestRejectedError),
        (307, {}, None, RequestRejectedError),
    ],
)
def test_error_for_status_classifies_by_what_the_caller_must_do(
    status: int, headers: dict[str, str], body: object, expected: type[WorkerError]
) -> None:
    error = error_for_status(status, headers, body, request_id="req-1", now=NOW)
    assert type(error) is expected
    assert error.status == status
    assert error.request_id == "req-1"


def test_429_carries_retry_after_and_defaults_to_60_s() -> None:
    with_header = error_for_status(429, {"Retry-After": "7"}, {"detail": "x"})
    without = error_for_status(429, {}, {"detail": "x"})
    assert isinstance(with_header, RateLimitedError)
    assert isinstance(without, RateLimitedError)
    assert with_header.retry_after_s == 7
    assert without.retry_after_s == DEFAULT_RETRY_AFTER_S


def test_redirect_message_names_the_target_and_says_not_followed() -> None:
    error = error_for_status(302, {"Location": "https://x.example/"}, None)
    assert "not followed" in str(error)
    assert "https://x.example/" in str(error)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("5", 5.0),
        (" 120 ", 120.0),
        ("0.25", 0.25),
        ("0", 0.0),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: unreadable
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    value: str | None, expected: float | None
) -> None:
    result = parse_retry_after(value, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": "Invalid API key"}, "Invalid API key"),
        ({"error": {"message": "Incorrect key", "type": "x"}}, "Incorrect key"),
        ({"error": "plain"}, "plain"),
        (
            {"detail": [{"loc": ["body"], "msg": "bad"}]},
            '[{"loc":["body"],"msg":"bad"}]',
        ),
        ("<html>\n  <h1>502</h1>\n</html>", "<html> <h1>502</h1> </html>"),
        (None, "HTTP 500"),
        ({"other": 1}, "HTTP 500"),
    ],
)
def test_error_detail_reads_mira_and_openai_bodies(body: object, expected: str) -> None:
    assert error_detail(body, fallback="HTTP 500") == expected


def test_error_detail_is_bounded() -> None:
    assert len(error_detail({"detail": "x" * 10_000}, fallback="")) < 400


def test_error_str_is_one_line_with_status() -> None:
    error = error_for_status(404, {}, {"detail": "Not\nFound"})
    assert str(error) == "HTTP 404: Not Found"


@pytest.mark.parametrize(
    ("header", "expected"), [("30", 30.0), ("0", 0.0), ("-5", 0.0), (None, None)]
)
def test_a_503_carries_its_retry_after_too(
    header: str | None, expected: float | None
) -> None:
    headers = {} if header is None else {"Retry-After": header}
    error = error_for_status(503, headers, {"detail": "busy"})
    assert isinstance(error, ServerError)
    assert error.retry_after_s == expected
