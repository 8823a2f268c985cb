"""The worker's errors, named by what the caller must do.

::

    WorkerError                     base; never raised bare
    ├── ConfigError                 bad settings or unreadable input -> exit 2
    ├── OutputError                 an output file cannot be written -> exit 7
    ├── FatalError                  stops the whole run at once (its stop_reason)
    │   ├── AuthError               401: key invalid, expired or revoked -> exit 3
    │   ├── PaymentRequiredError    402, or 429 "insufficient_quota" -> exit 4
    │   ├── QuotaError              the daily cap, the monthly budget, a Retry-After
    │   │                           over --max-retry-after -> exit 5
    │   └── SystematicFailureError  --max-consecutive-failures jobs failed -> exit 6
    │       └── UntrustedServerError  the server's TLS certificate is not trusted
    ├── RetryableError              transient; the only family that is retried
    │   ├── RateLimitedError        429; carries retry_after_s
    │   ├── ServerError             5xx, 408, 409
    │   ├── TransportError          connection errors and timeouts
    │   ├── BadResponseError        2xx whose body is not a JSON object
    │   ├── UpstreamError           a 200 whose answer is Mira's upstream-error text
    │   └── EmptyAnswerError        a 200 with no answer in it
    └── JobError                    permanent for this job; written to the errors file
        ├── InvalidJobError         a bad input line; carries line_no
        │   └── KeyInPromptError    a line whose messages carry an API key
        ├── RequestRejectedError    other 4xx and redirects
        ├── ContentFilteredError    a 200 whose answer moderation withheld
        ├── InvalidOutputError      no JSON, or JSON its schema refuses, after
        │                           the last re-ask; carries the problems
        ├── TruncatedError          an answer cut at max_tokens, not to be kept
        ├── UnrecordableResponseError  a 2xx body nested too deep to read or write
        ├── ResponseTooLargeError   a 2xx body over --max-response-bytes
        └── RetriesExhaustedError   the last RetryableError is its __cause__
"""

from __future__ import annotations

from typing import Any, TypedDict

from worker.exits import StopReason


class Origin(TypedDict):
    """Where an error came from: the answer's status, request id and body."""

    status: int | None
    request_id: str | None
    body: object


class WorkerError(Exception):
    """Base of every error the worker raises on purpose."""

    code = "worker_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"HTTP {self.status}: {self.message}"


class ConfigError(WorkerError):
    """Settings or input that make the run impossible; nothing was sent."""

    code = "config_error"


class OutputError(WorkerError):
    """An output file cannot be written: paying for answers that cannot be
    recorded is the one thing the run must not do, so it stops at once."""

    code = "output_failed"


class FatalError(WorkerError):
    """Stops the run for its stop_reason (whose severity says whether requests
    in flight are cancelled at once or given their grace)."""

    code = "fatal"
    stop_reason: StopReason


class AuthError(FatalError):
    """401: the key is invalid, expired or revoked; it will not work again."""

    code = "auth_failed"
    stop_reason = StopReason.AUTH_FAILED


class PaymentRequiredError(FatalError):
    """402, or a 429 saying the quota is spent: nothing more can be paid for."""

    code = "payment_required"
    stop_reason = StopReason.PAYMENT_REQUIRED


class QuotaError(FatalError):
    """A quota that does not come back within a run: Mira's daily message cap,
    its monthly token budget, or a longer Retry-After than --max-retry-after
    (domain/refusal.py tells them apart). The run stops resumably, for the
    reason given."""

    def __init__(self, message: str, *, stop_reason: StopReason, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.stop_reason = stop_reason
        self.code = stop_reason.label


class SystematicFailureError(FatalError):
    """Every recent job failed: something outside the jobs is wrong."""

    code = "systematic_failure"
    stop_reason = StopReason.SYSTEMATIC_FAILURE


class UntrustedServerError(SystematicFailureError):
    """The server's TLS certificate is not trusted: no retry can change that."""

    code = "tls_untrusted"


class RetryableError(WorkerError):
    """Transient: the same request may succeed later.

    `retry_after_s` is the server's Retry-After, when it sent one; the run holds
    every request back that long (never less than a retry's own backoff).
    """

    code = "retryable"
    cause = "other"
    retry_after_s: float | None = None
    # True when a job that ran out of attempts is best named by this error
    # (`empty_answer`) rather than by `retries_exhausted`.
    names_its_exhaustion = False


class RateLimitedError(RetryableError):
    """429 with the wait the server asked for."""

    code = "rate_limited"
    cause = "rate_limited"
    retry_after_s: float

    def __init__(self, message: str, *, retry_after_s: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class ServerError(RetryableError):
    """5xx, 408 or 409; a 503 may say when to come back (Retry-After)."""

    code = "server_error"
    cause = "server_error"

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class TransportError(RetryableError):
    """The connection failed, was dropped, or the attempt timed out.

    `reached_server` is False only when no connection was made: a request that
    reached Mira and was cut leaves its in-flight slot held there.
    """

    code = "connection_error"
    cause = "connection_error"

    def __init__(self, message: str, *, reached_server: bool = True, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reached_server = reached_server


class BadResponseError(RetryableError):
    """A 2xx whose body is not a JSON object."""

    code = "bad_response"
    cause = "bad_response"


class UpstreamError(RetryableError):
    """A 200 whose answer is the server's upstream-error text (`Ошибка: …`)."""

    code = "upstream_error"
    cause = "upstream_error"
    names_its_exhaustion = True


class EmptyAnswerError(RetryableError):
    """A 200 with no choices, or no content in them."""

    code = "empty_answer"
    cause = "empty_answer"
    names_its_exhaustion = True


class JobError(WorkerError):
    """Permanent for this job: it is written to the errors file; the run goes on."""

    code = "job_error"


class InvalidJobError(JobError):
    """An input line that cannot become a request."""

    code = "invalid_input"

    def __init__(self, message: str, *, line_no: int, job_id: str | None) -> None:
        super().__init__(message)
        self.line_no = line_no
        self.job_id = job_id


class KeyInPromptError(InvalidJobError):
    """An input line whose messages carry a string shaped like a Mira key: it
    is never sent, and the string is never printed."""

    code = "key_in_prompt"


class RequestRejectedError(JobError):
    """The API refused this request (4xx other than 401/402/429, or a redirect)."""

    code = "request_rejected"


class ContentFilteredError(JobError):
    """The server's moderation withheld the answer; asking again will not help."""

    code = "content_filtered"


class InvalidOutputError(JobError):
    """The answer is no JSON value, or one its schema refuses, and re-asking
    gave up: the last answer and what was wrong with it are kept."""

    code = "invalid_output"

    def __init__(
        self, message: str, *, problems: list[tuple[str, str]], **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.problems = problems


class TruncatedError(JobError):
    """The answer was cut at max_tokens (finish_reason "length"): it is kept in
    the error record, never written as a result."""

    code = "truncated"


class UnrecordableResponseError(JobError):
    """A 2xx answer nested too deep to read or to record."""

    code = "unrecordable_response"


class ResponseTooLargeError(JobError):
    """A 2xx body over --max-response-bytes (decompressed): not read further."""

    code = "response_too_large"


class RetriesExhaustedError(JobError):
    """Every attempt failed with a transient error."""

    code = "retries_exhausted"

    def __init__(self, last: RetryableError, *, attempts: int) -> None:
        super().__init__(
            f"gave up after {attempts} attempts: {last}",
            status=last.status,
            request_id=last.request_id,
            body=last.body,
        )
        self.attempts = attempts
        if last.names_its_exhaustion:
            self.code = last.code
