"""The two line shapes (CONTRACT section 4), read and checked: the JSON object,
its id, the request body either shape asks for, and its messages."""

from __future__ import annotations

import orjson

from worker.errors import InvalidJobError

MAX_MESSAGES = 200
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
# Keys of a simple line that are ours, not chat parameters to send.
_SIMPLE_OWN_KEYS = frozenset({"id", "custom_id", "prompt", "system", "metadata"})


def read_job_id(obj: dict[str, object], line_no: int) -> tuple[str | None, str | None]:
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


def check_messages(messages: object) -> str | None:
    """Why `messages` is no chat, or None when it is one."""
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


def body_from_line(
    obj: dict[str, object],
) -> tuple[dict[str, object] | None, str | None]:
    """(body, problem): the request body of either line shape."""
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
    messages: list[dict[str, object]] = []
    if system is not None:
        if not isinstance(system, str):
            return None, "system must be a string"
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    body["messages"] = messages
    return body, None


def load_object(raw: bytes, line_no: int) -> dict[str, object]:
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
