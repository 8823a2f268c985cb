"""Property-based: no input line crashes the intake, and exactly-once survives any stop.

The properties and their strategies are in tests/unit/properties.py, imported by
the tests that run them: every xdist worker collects this module and one runs
it, and hypothesis took a seventh of a second of each worker's start.
"""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_every_line_becomes_a_request_or_one_invalid_record() -> None:
    from tests.unit.properties import every_line_becomes_a_request_or_one_invalid_record

    every_line_becomes_a_request_or_one_invalid_record()


@pytest.mark.slow
def test_exactly_once_over_random_stops_and_resumes() -> None:
    from tests.unit.properties import exactly_once_over_random_stops_and_resumes

    exactly_once_over_random_stops_and_resumes()
