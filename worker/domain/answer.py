"""Whether a 200 is an answer: Mira writes some failures into the answer text.

Its backend (MIRA_API.md, "What the server really does") sends an upstream
failure as the answer `Ошибка: …` ("Error: …") or `Ошибка безопасности: …` with
`finish_reason: "stop"`, and output moderation replaces the whole answer with
`I cannot provide that response.` Neither may be kept as a result.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    body: dict[str, object]
    request_id: str | None
    streamed: bool = False


def choices_of(body: dict[str, object]) -> list[dict[str, object]]:
    """The answer's choices that are objects, in order."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return []
    return [choice for choice in choices if isinstance(choice, dict)]


def message_of(choice: dict[str, object]) -> dict[str, object]:
    """A choice's message (empty when it has none)."""
    message = choice.get("message")
    return message if isinstance(message, dict) else {}


def check_answer(body: dict[str, object], status: int, request_id: str | None) -> None:
    """Raise unless every choice of `body` holds a real answer: text, or tool
    calls (whose message may carry no content, as OpenAI's do).

    Raises:
        UpstreamError: an answer is the server's upstream-error text (retried).
        ContentFilteredError: moderation replaced an answer (the job fails).
        EmptyAnswerError: no choices, or a choice with neither content nor tool
            calls (retried).
    """
    kw: Origin = {"status": status, "request_id": request_id, "body": body}
    choices = choices_of(body)
    if not choices:
        raise EmptyAnswerError("a 200 with no answer in it", **kw)
    for choice in choices:
        message = message_of(choice)
        content = message.get("content")
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls and not content:
            continue  # a call for a tool, with nothing to say besides
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
