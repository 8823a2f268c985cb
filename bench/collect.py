"""collect on a large batch: time and peak RSS of `mira-batch collect` (real command).

Writes N input lines and their results (in shuffled completion order, as a run
leaves them) without a server, then collects them to CSV and to JSONL.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def write_batch(work: Path, n: int) -> None:
    with open(work / "big.jsonl", "w") as fh:
        for i in range(n):
            line = {"id": f"q{i}", "prompt": f"Question {i}?", "metadata": {"row": i}}
            fh.write(json.dumps(line) + "\n")
    order = list(range(n))
    random.Random(7).shuffle(order)
    with open(work / "big.results.jsonl", "w") as fh:
        for i in order:
            body = {
                "model": "mira",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Answer {i}."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": 4,
                    "total_tokens": 13,
                },
            }
            record = {
                "id": f"batch_req_{i}",
                "custom_id": f"q{i}",
                "response": {"status_code": 200, "request_id": f"r{i}", "body": body},
                "error": None,
                "metadata": {"row": i},
                "attempts": 1,
                "latency_s": 0.3,
            }
            fh.write(json.dumps(record) + "\n")


def collect_one(work: Path, to: str) -> dict[str, Any]:
    script = Path(sys.executable).with_name("mira-batch")
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            str(script),
            "collect",
            "big.jsonl",
            "--to",
            to,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "MIRA_LOG_LEVEL": "warning"},
        check=True,
    )
    return {
        "to": to,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(int(done.stdout.split()[-1]) / 1024, 1),
    }


def run_collect(work: Path, n: int = 200_000) -> list[dict[str, Any]]:
    """Both formats on n lines; prints a line each."""
    write_batch(work, n)
    results = [
        collect_one(work, to) for to in ("big.collected.csv", "big.jsonl.out.jsonl")
    ]
    for r in results:
        print(
            f"collect {n:,} lines to {r['to']}: {r['seconds']} s, "
            f"peak RSS {r['peak_rss_mb']} MB"
        )
    return results
