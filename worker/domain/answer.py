"""Whether a 200 is an answer: Mira writes some failures into the answer text.

Its backend (MIRA_API.md, "What the server really does") sends an upstream
failure as the answer `Ошибка: …` ("Error: …") or `Ошибка безопасности: …` with
`finish_reason: "stop"`, and output moderation replaces the whole answer with
`I cannot provide that response.` Neither may be kept as a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.errors import (
    ContentFilteredError,
    EmptyAnswerError,
    Origin,
    UpstreamError,
)

UPSTREAM_ERROR_PREFIXES = ("Ошибка: ", "Ошибка безопасности: ")
MODERATED = "I cannot provide that response."


@dataclass(frozen=True, slots=True)
class Answer:
    """A 2xx answer as read and as recorded: its status, parsed JSON body and
    request id, and whether it was assembled from a stream (SSE)."""

    status: int
    body: dict[str, Any]
    request_id: str | None
    streamed: bool = False


def check_answer(body: dict[str, Any], status: int, request_id: str | None) -> None:
    """Raise unless `body` holds a real answer.

    Raises:
        UpstreamError: the answer is the server's upstream-error text (retried).
        ContentFilteredError: moderation replaced the answer (the job fails).
        EmptyAnswerError: no choices, or a choice with no content (retried).
    """
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    kw: Origin = {"status": status, "request_id": request_id, "body": body}
    if not isinstance(content, str) or not content.strip():
        raise EmptyAnswerError("a 200 with no answer in it", **kw)
    text = content.lstrip()
    if text.startswith(UPSTREAM_ERROR_PREFIXES):
        raise UpstreamError(f"the server's upstream failed: {text[:200]}", **kw)
    if text.rstrip() == MODERATED:
        raise ContentFilteredError(
            f"the answer was withheld by the server's moderation ({MODERATED!r})",
            **kw,
        )
