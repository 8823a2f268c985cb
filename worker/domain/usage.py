"""Tokens as Mira counts them (whitespace-separated words), and the usage an
answer reports, read as untrusted numbers from the server."""

from __future__ import annotations

# Prompt, completion and total tokens, and the first value that was no token
# count (counted as 0), or None when every value was one. A plain tuple: one
# is read per answer, on the hot path.
Usage = tuple[int, int, int, object]


def words(text: object) -> int:
    """Mira's token count, for usage and billing alike: whitespace-separated words."""
    return len(text.split()) if isinstance(text, str) else 0


def read_usage(usage: object) -> Usage:
    """An answer's `usage` object as whole numbers of 0 or more.

    Anything else counts as 0, so a negative count can never give back budget
    or pacing; a missing or invalid total is the sum of the other two.
    """
    if not isinstance(usage, dict):
        return 0, 0, 0, None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    total = usage.get("total_tokens")
    if type(prompt) is type(completion) is type(total) is int and (
        min(prompt, completion, total) >= 0
    ):
        return prompt, completion, total, None
    values = (prompt, completion) if total is None else (prompt, completion, total)
    suspect = next((v for v in values if v is not None and _count(v) is None), None)
    p, c = _count(prompt) or 0, _count(completion) or 0
    # A total that is missing or no count is the sum of the parts, so a lying
    # total can never lift a budget.
    t = _count(total) if total is not None else None
    return p, c, t if t is not None else p + c, suspect


def _count(value: object) -> int | None:
    """The value as a token count; None when it is none (missing counts as 0)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
