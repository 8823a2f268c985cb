"""Writing the report: the page for a run's summary and outcome files."""

from __future__ import annotations

from pathlib import Path

from worker.domain.summary import RunSummary
from worker.files.outputs import RunFiles, atomic_write
from worker.logs import scrub_bytes
from worker.page.document import render_page
from worker.page.tables import read_outcomes


def write_report(files: RunFiles, summary: RunSummary) -> Path | None:
    """Write the run's report page, when it has one (atomically: a kill leaves
    the old page); return where.

    Raises:
        OSError: the page cannot be written.
        ConfigError: an outcome file cannot be read.
    """
    if files.report is None:
        return None
    outcomes = read_outcomes(files.results, files.errors)
    page = render_page(files.stem, summary, outcomes)
    atomic_write(files.report, scrub_bytes(page.encode("utf-8")))
    return files.report
