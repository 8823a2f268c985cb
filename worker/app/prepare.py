"""Before the first request: the key, the base URL, the output paths, the run
lock, --fresh or --retry-failed, what earlier runs finished, and the input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

from worker.api.network import check_base_url_security
from worker.config import Settings, load_api_key
from worker.domain.summary import RunSummary
from worker.files.cache import AnswerCache
from worker.files.jobs import rules_for
from worker.files.jsonl import open_input
from worker.files.outputs import RunFiles, RunLock, check_output_paths
from worker.files.resume import (
    ResumeState,
    load_resume_state,
    release_failed,
    start_fresh,
)
from worker.files.sources import JobSource, open_source
from worker.logs import register_secret

log = logging.getLogger("worker.run")

ResumeMode = Literal["resume", "fresh", "retry_failed"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a run starts from."""

    api_key: str
    source: JobSource  # the input, opened as what it is
    resume: ResumeState
    unclean: bool  # the last run on these files did not end with its summary
    cache: AnswerCache | None = None  # --cache, open for the run
    last_written_at: float | None = None  # Unix time of the last outcome written


@contextmanager
def prepared(
    settings: Settings, files: RunFiles, *, mode: ResumeMode, force: bool
) -> Iterator[Prepared]:
    """Check everything that can be checked before sending; hold the run lock.

    Raises:
        ConfigError: bad settings, key, input or output files; nothing was sent.
    """
    api_key = load_api_key(settings)
    register_secret(api_key)
    check_base_url_security(settings)
    rules = rules_for(settings)
    check_output_paths(
        files.input,
        {"results": files.results, "errors": files.errors, "summary": files.summary},
    )
    cache = AnswerCache(settings.cache) if settings.cache is not None else None
    with RunLock(files.results), cache or nullcontext():
        fh = open_input(files.input)
        try:
            source = open_source(fh, files.input, settings, rules)
            unclean = ended_uncleanly(files)
            written_at = _last_written_at(files)
            resume = _resume_state(files, mode, force=force)
            yield Prepared(api_key, source, resume, unclean, cache, written_at)
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()


def _resume_state(files: RunFiles, mode: ResumeMode, *, force: bool) -> ResumeState:
    """Apply --fresh or --retry-failed, then read what earlier runs finished."""
    if mode == "fresh":
        start_fresh([files.results, files.errors], force=force)
    elif mode == "retry_failed":
        released = release_failed(files.errors)
        if released:
            log.info("%d failed jobs from %s go back into play", released, files.errors)
    resume = load_resume_state(files.results, files.errors)
    if len(resume.done):
        log.info("resuming: %d jobs already have an outcome", len(resume.done))
    return resume


def _last_written_at(files: RunFiles) -> float | None:
    """When the last run wrote its last outcome (its last request, about)."""
    try:
        return files.results.stat().st_mtime
    except OSError:
        return None


def ended_uncleanly(files: RunFiles) -> bool:
    """True when the last run on these files stopped without its summary (a
    SIGKILL, a lost machine) or left requests in flight: Mira may still hold
    their in-flight slots, for up to 5 minutes."""
    try:
        results_at = files.results.stat().st_mtime
    except OSError:
        return False  # a first run
    try:
        if files.summary.stat().st_mtime < results_at:
            return True
        summary = RunSummary.from_bytes(files.summary.read_bytes())
    except (OSError, ValueError):
        return True
    return summary.slots_left_held > 0
