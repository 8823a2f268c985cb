"""The suite's own safety net: the key-leak check that every test's report passes."""

from __future__ import annotations

from typing import Literal

import pytest

from tests import conftest
from tests.keys import OTHER_KEY, SENTINEL_KEY


def _checked(
    when: Literal["setup", "call", "teardown"], sections: list[tuple[str, str]]
) -> pytest.TestReport:
    """What the hook makes of a passing phase that captured these sections."""
    report = pytest.TestReport(
        nodeid="t.py::t",
        location=("t.py", 0, "t"),
        keywords={},
        outcome="passed",
        longrepr=None,
        when=when,
        sections=sections,
    )
    call = pytest.CallInfo.from_call(lambda: None, when=when)
    hook = conftest.pytest_runtest_makereport(item=None, call=call)  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration) as done:
        hook.send(report)
    result: pytest.TestReport = done.value.value
    return result


@pytest.mark.parametrize(
    ("section", "leaked"),
    [
        ("Captured log call", f"DEBUG    worker.run:run.py:9 key {SENTINEL_KEY}"),
        ("Captured stdout call", f"Authorization: Bearer {OTHER_KEY}\n"),
        ("Captured stderr call", f"...{SENTINEL_KEY[8:]}..."),
    ],
)
def test_a_key_in_any_captured_stream_fails_the_phase_without_showing_it(
    section: str, leaked: str
) -> None:
    report = _checked("call", [("Captured stdout setup", "ready"), (section, leaked)])
    assert report.failed
    assert section in str(report.longrepr)
    shown = "".join(text for _, text in report.sections) + str(report.longrepr)
    assert SENTINEL_KEY[8:] not in shown
    assert OTHER_KEY[8:] not in shown
    assert "[a key" in shown


def test_a_leak_fails_the_phase_it_happened_in_and_no_other() -> None:
    setup_leak = ("Captured log setup", f"key {SENTINEL_KEY}")
    assert _checked("setup", [setup_leak]).failed
    # The call's report repeats the setup's sections; the setup already failed.
    assert _checked("call", [setup_leak, ("Captured log call", "ok")]).passed


def test_output_without_a_key_passes_untouched() -> None:
    sections = [("Captured stdout call", "sk-mira-<redacted>\n200 jobs")]
    report = _checked("call", sections)
    assert report.passed
    assert report.sections == sections
