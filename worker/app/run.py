"""`mira-batch run`: prepare the files, run the pipeline, write the summary."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

import orjson

from worker.api.client import ChatClient
from worker.app.parts import RunParts
from worker.config import Settings, check_base_url_security, load_api_key
from worker.exits import StopReason
from worker.files.jobs import Shard
from worker.files.jsonl import open_input
from worker.files.outputs import RunLock, check_output_paths
from worker.files.resume import (
    ResumeState,
    atomic_write,
    load_resume_state,
    release_failed,
    start_fresh,
)
from worker.files.writer import ResultWriter
from worker.flow.limiters import Clock, Sleep, monotonic
from worker.logs import emit, register_secret, scrub_bytes
from worker.report.cost import LIST_PRICES_RUB_PER_M, Prices
from worker.report.metrics import Metrics
from worker.report.render import render_summary
from worker.report.summary import RunStats
from worker.run.sender import Client
from worker.run.signals import handle_signals
from worker.run.stop import StopController

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

    @property
    def stem(self) -> str:
        """The name the outputs share (the metrics' `input` label)."""
        return self.summary.name.removesuffix(".summary.json")

    def listing(self) -> dict[str, str]:
        """The files, for the summary."""
        return {
            "input": self.input,
            "results": str(self.results),
            "errors": str(self.errors),
        }

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
    client_factory: Callable[[Settings, str], Client] | None = None,
    prices: Prices = LIST_PRICES_RUB_PER_M,
) -> int:
    """Run one batch and return the process exit code.

    Raises:
        ConfigError: bad settings, key, input or output files; nothing was sent.
    """
    out = out or sys.stderr
    api_key = load_api_key(settings)
    register_secret(api_key)
    check_base_url_security(settings)
    check_output_paths(
        files.input,
        {"results": files.results, "errors": files.errors, "summary": files.summary},
    )
    with RunLock(files.results), _opened(files.input) as source:
        stats = RunStats()
        resume = _prepare_outputs(files, mode, force=force, stats=stats)
        parts = RunParts.build(
            settings,
            stats,
            StopController(sleep=sleep),
            clock,
            results=files.results,
            errors=files.errors,
            shard=shard,
        )
        client = (client_factory or _make_client)(settings, api_key)
        metrics = parts.metrics(files.stem, prices)
        started = time.monotonic()
        with handle_signals(parts.stop):
            async with _syncing(parts.writer), _every(metrics, settings), client:
                pipeline = parts.pipeline(source, client, resume=resume, shard=shard)
                async with parts.progress(out, prices):
                    await pipeline.run(source)
        summary = parts.summary(
            files.listing(), elapsed_s=time.monotonic() - started, prices=prices
        )
        code = _report(summary, files.summary, settings, out)
        if metrics is not None:
            await metrics.finish(code)
        return code


@contextmanager
def _opened(source: str) -> Iterator[BinaryIO]:
    """The input, opened; closed after unless it is standard input."""
    fh = open_input(source)
    try:
        yield fh
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


@asynccontextmanager
async def _every(metrics: Metrics | None, settings: Settings) -> AsyncIterator[None]:
    """The metrics file, every --progress-interval while the run lasts."""
    if metrics is None:
        yield
        return
    writing = asyncio.create_task(metrics.write_every(settings.progress_interval_s))
    try:
        yield
    finally:
        writing.cancel()
        await asyncio.wait([writing])


@asynccontextmanager
async def _syncing(writer: ResultWriter) -> AsyncIterator[None]:
    """fsync the outputs every second while the run lasts; close them after."""
    syncer = asyncio.create_task(writer.sync_every(FSYNC_INTERVAL_S))
    try:
        yield
    finally:
        # The periodic fsync ends before the files close (close fsyncs them
        # once more); asyncio.wait never swallows a cancellation of ours.
        syncer.cancel()
        await asyncio.wait([syncer])
        writer.close()


def _prepare_outputs(
    files: RunFiles, mode: ResumeMode, *, force: bool, stats: RunStats
) -> ResumeState:
    """Apply --fresh or --retry-failed, then read what earlier runs finished."""
    if mode == "fresh":
        start_fresh([files.results, files.errors], force=force)
    elif mode == "retry_failed":
        released = release_failed(files.errors)
        if released:
            log.info("%d failed jobs from %s go back into play", released, files.errors)
    resume = load_resume_state(files.results, files.errors)
    stats.succeeded_before, stats.failed_before = resume.succeeded, resume.failed
    if len(resume.done):
        log.info("resuming: %d jobs already have an outcome", len(resume.done))
    return resume


def _report(
    summary: dict[str, Any], path: Path, settings: Settings, out: TextIO
) -> int:
    """Write the summary file, show it (a table, or one JSON log line), and
    return the exit code: 7 when even the summary could not be written."""
    document = orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n"
    try:
        atomic_write(path, scrub_bytes(document))
    except OSError as exc:
        log.error("could not write the summary %s: %s", path, exc.strerror)
        summary["exit_code"] = StopReason.OUTPUT_FAILED.exit_code
    if settings.log_format == "json":
        # Log collectors get the summary as one JSON line like every other.
        log.info(
            "run finished: %s",
            summary["stop_reason"],
            extra={"stop_reason": summary["stop_reason"], "summary": summary},
        )
    else:
        emit(out, render_summary(summary))
    code: int = summary["exit_code"]
    return code


def _make_client(settings: Settings, api_key: str) -> ChatClient:
    return ChatClient(
        settings.base_url,
        api_key,
        timeout_s=settings.request_timeout_s,
        max_connections=settings.concurrency,
        max_response_bytes=settings.max_response_bytes,
    )
