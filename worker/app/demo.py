"""`mira-batch demo`: the real pipeline against the bundled simulator; no key needed."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from pathlib import Path

from pydantic import SecretStr

from worker.app.run import execute_run
from worker.config import Settings
from worker.files.outputs import RunFiles
from worker.sim.faults import Faults
from worker.sim.server import Simulator

log = logging.getLogger("worker.demo")

# A few percent of every transient fault the run must survive, fast enough for a
# demo: answers quicker than a model's (under 50 ms), so the run grows at once.
DEMO_FAULTS = Faults(
    seed=2026,
    latency_ms=10,
    latency_jitter_ms=30,
    p429=0.02,
    retry_after=0.2,
    p500=0.02,
    p502=0.01,
    p503=0.01,
    p_drop=0.01,
    p_truncate=0.01,
    p_malformed=0.01,
)


def example_jobs() -> Path:
    """jobs/example.jsonl from a source checkout, else the copy inside the package."""
    checkout = Path(__file__).resolve().parents[2] / "jobs" / "example.jsonl"
    if checkout.is_file():
        return checkout
    packaged = resources.files("worker") / "_data" / "example.jsonl"
    with resources.as_file(packaged) as path:
        return Path(path)


def _settings(key: str, base_url: str) -> Settings:
    # Every field is set, so no MIRA_* variable can point the demo elsewhere.
    return Settings(
        api_key=SecretStr(key),
        api_key_file=None,
        base_url=base_url,
        model="mira",
        concurrency=8,
        max_attempts=8,
        request_timeout_s=10.0,
        rpm=None,
        tpm=None,
        max_retry_after_s=60.0,
        deadline_s=None,
        token_budget=None,
        max_consecutive_failures=50,
        shutdown_grace_s=5.0,
        allow_insecure_http=False,
        progress="auto",
        progress_interval_s=2.0,
        shard_count=None,
    )


async def _demo(output_dir: Path) -> int:
    sim = Simulator(faults=DEMO_FAULTS)
    base_url = await sim.start()
    try:
        jobs = example_jobs()
        log.info("simulator on %s; running %s into %s/", base_url, jobs, output_dir)
        settings = _settings(next(iter(sim.keys)), base_url)
        files = RunFiles.default(str(jobs), directory=output_dir)
        return await execute_run(settings, files, mode="fresh", force=True)
    finally:
        stats = sim.stats
        log.info(
            "simulator saw %d requests and injected %s",
            stats.requests,
            ", ".join(
                f"{name} {count}"
                for name, count in (
                    ("429", stats.by_status.get(429, 0)),
                    ("5xx", sum(n for s, n in stats.by_status.items() if s >= 500)),
                    ("dropped connections", stats.dropped),
                    ("cut bodies", stats.truncated),
                    ("malformed bodies", stats.malformed),
                )
            ),
        )
        await sim.stop()


def run_demo(output_dir: Path) -> int:
    """Run the demo; returns the run's exit code."""
    return asyncio.run(_demo(output_dir))
