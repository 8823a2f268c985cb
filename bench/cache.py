"""--cache on 10,000 jobs: a first run fills the cache against the simulator, then
a second run over a fresh output set answers every job from it (real command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.mira import KEY, Sim, _mira_batch


def run_cache(work: Path, port: int, n: int = 10_000) -> dict[str, Any]:
    """Both runs; prints a line."""
    with open(work / "jobs.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"j{i}", "prompt": f"Question {i}?"}) + "\n")
    sim = Sim(port, [])
    env = {**os.environ, "MIRA_API_KEY": KEY, "MIRA_BASE_URL": f"{sim.url}/v1"}
    argv = [
        *_mira_batch(),
        "run",
        "jobs.jsonl",
        "--progress",
        "off",
        "--fresh",
        "--force",
        "--cache",
        "answers.sqlite",
        "--concurrency",
        "64",
    ]
    try:
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            code = subprocess.call(
                argv,
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            timings.append((code, round(time.perf_counter() - started, 2)))
        summary = json.loads((work / "jobs.summary.json").read_text())
        requests = sim.stats()["requests"]
    finally:
        sim.stop()
    result = {
        "jobs": n,
        "filling_run_s": timings[0][1],
        "all_hits_run_s": timings[1][1],
        "hits": summary["cache_hits"],
        "requests_sent_in_all": requests,
        "exit_codes": [t[0] for t in timings],
    }
    print(
        f"cache, {n:,} jobs: filling run {result['filling_run_s']} s, a second run "
        f"with every job a hit {result['all_hits_run_s']} s ({result['hits']} hits, "
        f"{requests} requests in all)"
    )
    return result


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import free_port

    with tempfile.TemporaryDirectory(prefix="mira-bench-") as tmp:
        run_cache(Path(tmp), free_port())
