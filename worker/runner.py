"""`mira-batch run`: prepare the files, run the pipeline, write the summary."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import orjson

from worker.client import ChatClient
from worker.config import Settings, check_base_url_security, load_api_key
from worker.control import RunControl
from worker.flow import Clock, Sleep, monotonic
from worker.intake import Shard
from worker.jsonl import ResultWriter, open_input
from worker.logs import emit, scrub_bytes
from worker.pipeline import Pipeline
from worker.progress import ProgressReporter
from worker.report import render_summary
from worker.resume import atomic_write, load_resume_state, release_failed, start_fresh
from worker.shutdown import handle_signals
from worker.summary import RunStats, build_summary, exit_code_for

log = logging.getLogger("worker.run")

FSYNC_INTERVAL_S = 1.0
ResumeMode = Literal["resume", "fresh", "retry_failed"]


@dataclass(frozen=True, slots=True)
class RunFiles:
    """Where a run reads and writes."""

    input: str
    results: Path
    errors: Path
    summary: Path

    @classmethod
    def default(
        cls,
        source: str,
        *,
        results: Path | None = None,
        errors: Path | None = None,
        summary: Path | None = None,
        shard: Shard | None = None,
    ) -> RunFiles:
        """`<input stem>[.shard-K-of-N].results.jsonl` etc. in the working directory."""
        stem = "stdin" if source == "-" else Path(source).name.removesuffix(".jsonl")
        if shard is not None:
            stem = f"{stem}.shard-{shard.index}-of-{shard.count}"
        return cls(
            input=source,
            results=results or Path(f"{stem}.results.jsonl"),
            errors=errors or Path(f"{stem}.errors.jsonl"),
            summary=summary or Path(f"{stem}.summary.json"),
        )


async def _default_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def execute_run(
    settings: Settings,
    files: RunFiles,
    *,
    mode: ResumeMode = "resume",
    force: bool = False,
    shard: Shard | None = None,
    out: TextIO | None = None,
    clock: Clock = monotonic,
    sleep: Sleep = _default_sleep,
    client_factory: Callable[[Settings, str], ChatClient] | None = None,
) -> int:
    """Run one batch and return the process exit code.

    Raises:
        ConfigError: bad settings, key, input or output files; nothing was sent.
    """
    out = out or sys.stderr
    api_key = load_api_key(settings)
    check_base_url_security(settings)
    source = open_input(files.input)
    try:
        stats = RunStats()
        if mode == "fresh":
            start_fresh([files.results, files.errors], force=force)
        elif mode == "retry_failed":
            released = release_failed(files.errors)
            if released:
                log.info(
                    "%d failed jobs from %s go back into play", released, files.errors
                )
        resume = load_resume_state(files.results, files.errors)
        stats.succeeded_before, stats.failed_before = resume.succeeded, resume.failed
        if len(resume.done):
            log.info("resuming: %d jobs already have an outcome", len(resume.done))
        writer = ResultWriter(files.results, files.errors)
        writer.open()
        started = time.monotonic()
        control = RunControl()
        make_client = client_factory or _make_client
        with handle_signals(control) as signals:
            syncer = asyncio.create_task(writer.sync_every(FSYNC_INTERVAL_S))
            try:
                async with make_client(settings, api_key) as client:
                    pipeline = Pipeline(
                        settings,
                        client,
                        writer,
                        resume=resume,
                        control=control,
                        stats=stats,
                        shard=shard,
                        clock=clock,
                        sleep=sleep,
                    )
                    async with ProgressReporter(settings, stats, pipeline.limiter, out):
                        await pipeline.run(source)
            finally:
                # The periodic fsync ends before the files close (close fsyncs
                # them once more); asyncio.wait never swallows our own cancel.
                syncer.cancel()
                await asyncio.wait([syncer])
                writer.close()
        stop_reason = control.stop_reason or "completed"
        any_failed = stats.failed + stats.failed_before > 0
        code = exit_code_for(
            stop_reason, any_failed=any_failed, signal_exit=signals.exit_code
        )
        summary = build_summary(
            stats,
            stop_reason=stop_reason,
            message=control.message,
            exit_code=code,
            elapsed_s=time.monotonic() - started,
            files={
                "input": files.input,
                "results": str(files.results),
                "errors": str(files.errors),
            },
            concurrency={
                "ceiling": settings.concurrency,
                "final": pipeline.limiter.limit,
                "decreases": pipeline.limiter.decreases,
            },
        )
        document = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
        atomic_write(files.summary, scrub_bytes(document))
        if settings.log_format == "json":
            # Log collectors get the summary as one JSON line like every other.
            log.info(
                "run finished: %s",
                stop_reason,
                extra={"stop_reason": stop_reason, "summary": summary},
            )
        else:
            emit(out, render_summary(summary))
        return code
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def _make_client(settings: Settings, api_key: str) -> ChatClient:
    return ChatClient(
        settings.base_url,
        api_key,
        timeout_s=settings.request_timeout_s,
        max_connections=settings.concurrency,
    )
