"""Logs: both formats are scrubbed of keys; JSON mode writes one object a line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tests.helpers import SENTINEL_KEY, assert_no_key, logging_restored
from worker.logs import emit, scrub, scrub_bytes, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


def test_scrub_removes_keys_and_bearer_credentials() -> None:
    text = f"key={SENTINEL_KEY} header='Authorization: Bearer {SENTINEL_KEY}'"
    assert_no_key(scrub(text))
    assert "[REDACTED]" in scrub(text)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_log_path_is_scrubbed(fmt: str, restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("debug", fmt, stream=stream)
    log = logging.getLogger("worker.test")
    log.debug("debug %s", SENTINEL_KEY)
    log.warning(f"warning {SENTINEL_KEY}")  # noqa: G004 - a careless caller
    try:
        raise RuntimeError(f"boom {SENTINEL_KEY}")
    except RuntimeError:
        log.exception("failed", extra={"job_id": SENTINEL_KEY})
    assert_no_key(stream.getvalue())
    if fmt == "json":
        lines = stream.getvalue().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["level"] for r in records] == ["debug", "warning", "error"]
        assert "exception" in records[2]
        assert records[2]["job_id"] == "[REDACTED]"


def test_json_mode_turns_python_warnings_into_json_lines(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    logging.getLogger("py.warnings").warning("a warning")
    assert json.loads(stream.getvalue())["message"] == "a warning"


def test_emit_scrubs_user_facing_text() -> None:
    stream = io.StringIO()
    emit(stream, f"summary {SENTINEL_KEY}")
    assert_no_key(stream.getvalue())
    assert stream.getvalue().endswith("\n")


def test_scrub_bytes_masks_keys_in_json_and_keeps_it_valid() -> None:
    line = json.dumps(
        {"detail": f"bad key {SENTINEL_KEY}", "text": "the bearer of news"}
    )
    cleaned = scrub_bytes(line.encode())
    assert_no_key(cleaned)
    assert json.loads(cleaned)["text"] == "the bearer of news"
    untouched = b'{"a": "b"}'
    assert scrub_bytes(untouched) is untouched


def test_a_key_in_use_is_masked_with_or_without_its_prefix() -> None:
    from worker.logs import register_secret, scrub, scrub_bytes

    key = "sk-mira-" + "c0ffee" * 6 + "abcd"
    register_secret(key)
    secret = key.removeprefix("sk-mira-")
    for text in (key, secret, secret.upper(), f"Bearer {key}", f"x={secret}."):
        assert secret not in scrub(text).lower()
        assert secret.encode() not in scrub_bytes(text.encode()).lower()


def test_json_lines_are_scrubbed_after_serialising_nested_fields() -> None:
    import json
    import logging

    from worker.logs import JsonFormatter

    record = logging.LogRecord("worker", logging.INFO, __file__, 1, "done", (), None)
    record.summary = {"message": "HTTP 401: bad key sk-mira-" + "ab" * 20}
    line = JsonFormatter().format(record)
    assert "sk-mira-abab" not in line
    assert json.loads(line)["summary"]["message"].endswith("[REDACTED]")
