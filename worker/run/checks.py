"""Whether an answer is usable as data, decided as an answer hook (hooks.py):
an answer cut at max_tokens, and one that its job's JSON Schema refuses, are
asked for again, kept, or failed; a usable one is written with its parsed JSON.

- Cut (`finish_reason: "length"`): `--on-truncated retry` asks once more with
  max_tokens doubled, up to Mira's 16,384, then fails the job as `truncated`;
  `keep` writes it with `"truncated": true`; `fail` fails it at once. A cut
  answer is never written as a plain result.
- A job with a schema: every choice's content is read as JSON (whole, one
  fenced block, or the one value inside prose) and validated. If one is not
  usable, the conversation goes on: the answer becomes an assistant message
  and a user message names what was wrong (at most 5 errors by path, as
  instructor does), up to `--max-reasks` times; then `invalid_output`, the
  last answer and its errors kept in the error record. Each re-ask is a paid
  request and one of the day's messages on Mira.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import orjson

from worker.domain.answer import Answer, choices_of, message_of
from worker.domain.job import Job
from worker.domain.schema import Schema, extract, reask_message
from worker.errors import InvalidOutputError, TruncatedError
from worker.report.tally import Tally
from worker.run.hooks import Accept, AskAgain, Conversation, Reject, Verdict

MIRA_MAX_TOKENS = 16_384
MIRA_DEFAULT_MAX_TOKENS = 4_096  # what Mira gives a request that names none
OnTruncated = Literal["retry", "keep", "fail"]


class AnswerCheck:
    """Truncation and the job's schema, checked on every answer."""

    __slots__ = ("_max_reasks", "_on_truncated", "_tally")

    def __init__(
        self, *, max_reasks: int, on_truncated: OnTruncated, tally: Tally
    ) -> None:
        self._max_reasks = max_reasks
        self._on_truncated = on_truncated
        self._tally = tally

    def __call__(self, talk: Conversation, answer: Answer) -> Verdict | None:
        """What to do with `answer`; None when there is nothing to check."""
        choices = choices_of(answer.body)
        cut = any(choice.get("finish_reason") == "length" for choice in choices)
        if cut:
            self._tally.cut()
            if (verdict := self._cut(talk, answer)) is not None:
                return verdict
        schema = talk.job.schema
        if schema is None:
            return Accept({"truncated": True}) if cut else None
        read = [_read(schema, message_of(choice).get("content")) for choice in choices]
        if all(problems == [] for _, _, problems in read):
            return Accept(_usable(read, talk.reasks, cut))
        if cut:  # kept as it came: a cut answer is rarely whole JSON
            return Accept({"truncated": True, **_reasks(talk.reasks)})
        content, problems = next(
            (c, p) for c, (_, _, p) in zip(_contents(choices), read, strict=True) if p
        )
        if talk.reasks < self._max_reasks:
            return AskAgain(_continued(talk.payload, content, problems), reask=True)
        shown = problems if isinstance(problems, str) else _said(problems)
        error = InvalidOutputError(
            f"no usable JSON after {talk.reasks} re-asks: {shown}",
            problems=[] if isinstance(problems, str) else problems,
            status=answer.status,
            request_id=answer.request_id,
            body=answer.body,
        )
        return Reject(error, _reasks(talk.reasks))

    def _cut(self, talk: Conversation, answer: Answer) -> Verdict | None:
        """A cut answer, as --on-truncated says; None to keep it."""
        if self._on_truncated == "keep":
            return None
        if self._on_truncated == "retry" and not talk.widened:
            widened = _widened(talk.payload)
            if widened is not None:
                return AskAgain(widened, reask=False)
        error = TruncatedError(
            "the answer was cut at max_tokens (finish_reason: length)"
            + (" again, with max_tokens doubled" if talk.widened else ""),
            status=answer.status,
            request_id=answer.request_id,
            body=answer.body,
        )
        return Reject(error, _reasks(talk.reasks))

    def as_is(self, job: Job, answer: Answer) -> Mapping[str, object]:
        """What a reused answer's record adds (from the cache): its parsed JSON
        and whether it was cut, without asking anything again."""
        choices = choices_of(answer.body)
        cut = any(choice.get("finish_reason") == "length" for choice in choices)
        if job.schema is None:
            return {"truncated": True} if cut else {}
        read = [_read(job.schema, message_of(c).get("content")) for c in choices]
        if all(problems == [] for _, _, problems in read):
            return _usable(read, 0, cut)
        return {"truncated": True} if cut else {}


Read = tuple[object, str | None, list[tuple[str, str]] | str]


def _read(schema: Schema, content: object) -> Read:
    """A choice's JSON, the form it took, and what is wrong with it ([]: none)."""
    if not isinstance(content, str) or not content.strip():
        return None, None, "it holds no text (only tool calls, or nothing)"
    try:
        found = extract(content)
    except ValueError as exc:
        return None, None, str(exc)
    if found is None:
        return None, None, "it holds no JSON value"
    value, form = found
    return value, form, schema.problems(value)


def _contents(choices: list[dict[str, object]]) -> list[str]:
    return [
        content if isinstance(content := message_of(c).get("content"), str) else ""
        for c in choices
    ]


def _usable(read: list[Read], reasks: int, cut: bool) -> dict[str, object]:
    """The record's keys for a usable answer: one value a choice (a list of
    them when there are several)."""
    values = [value for value, _, _ in read]
    forms = [form for _, form, _ in read]
    extra: dict[str, object] = {
        "parsed": values[0] if len(values) == 1 else values,
        "parsed_from": forms[0] if len(forms) == 1 else forms,
        **_reasks(reasks),
    }
    if cut:
        extra["truncated"] = True
    return extra


def _reasks(reasks: int) -> dict[str, object]:
    return {"reasks": reasks} if reasks else {}


def _said(problems: list[tuple[str, str]]) -> str:
    said = "; ".join(f"{path}: {message}" for path, message in problems[:3])
    return said + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")


def _continued(
    payload: bytes, content: str, problems: list[tuple[str, str]] | str
) -> bytes:
    """The same request, the answer and what was wrong with it added."""
    body = orjson.loads(payload)
    body["messages"] = [
        *body["messages"],
        {"role": "assistant", "content": content},
        {"role": "user", "content": reask_message(problems)},
    ]
    return orjson.dumps(body)


def _widened(payload: bytes) -> bytes | None:
    """The same request with max_tokens doubled, up to Mira's 16,384; None
    when it already asks for that much."""
    body = orjson.loads(payload)
    key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    current = body.get(key)
    if not isinstance(current, int) or current <= 0:
        current = MIRA_DEFAULT_MAX_TOKENS
    if current >= MIRA_MAX_TOKENS:
        return None
    body[key] = min(MIRA_MAX_TOKENS, current * 2)
    return orjson.dumps(body)
