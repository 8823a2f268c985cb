"""The test keys, and the check that none leaked: every test runs it."""

from __future__ import annotations

# Every test that needs a key uses this one, so one grep proves it never leaks.
SENTINEL_KEY = "sk-mira-" + "5e7f1a2b3c4d" * 3 + "e0f1"
OTHER_KEY = "sk-mira-" + "a1" * 20
assert len(SENTINEL_KEY) == len(OTHER_KEY) == 48
TEST_KEYS = (SENTINEL_KEY, OTHER_KEY)


def _secret_of(key: str) -> str:
    """What follows `sk-mira-`: a key leaks as much when only this part shows."""
    return key[len("sk-mira-") :]


def assert_no_key(text: str | bytes, *keys: str) -> None:
    """Fail when any of the keys (default: both test keys) appears in text."""
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for key in keys or TEST_KEYS:
        assert key not in data, "an API key leaked into output"
        assert _secret_of(key) not in data, (
            "the secret part of an API key leaked into output"
        )


def without_keys(text: str) -> str:
    """The text with each test key, and each key's secret part, blotted out:
    what a failing report may show of output that leaked one."""
    for key in TEST_KEYS:
        text = text.replace(key, "[a key]").replace(_secret_of(key), "[a key's secret]")
    return text
