"""Large tables stream: a 1,000,000-row CSV validated, then run against a fast
endpoint (nginx), with the peak RSS of each (the real `mira-batch` command);
and the JSONL reader's time on a 50 MB line between valid ones.

    python bench/run.py tables [--rows N]
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)
TEMPLATE = "Classify this review of {{ product }}: {{ review }}"


def write_table(path: Path, rows: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "product", "review"])
        for i in range(rows):
            review = (
                f'Row {i}: "fine", but slow,\nand loud' if i % 10 == 0 else f"ok {i}"
            )
            out.writerow([f"r{i}", f"product {i % 97}", review])


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Wall time, exit code and peak RSS (MB) of one command."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    rss_kb = int(done.stdout.strip().splitlines()[-1])
    return {
        "exit": done.returncode,
        "seconds": round(wall, 1),
        "peak_rss_mb": round(rss_kb / 1024, 1),
    }


def run_tables(work: Path, url: str, rows: int, key: str) -> dict[str, Any]:
    script = str(Path(sys.executable).with_name("mira-batch"))
    table = work / "big.csv"
    write_table(table, rows)
    (work / "t.j2").write_text(TEMPLATE)
    env = {"MIRA_API_KEY": key, "PATH": "/usr/bin:/bin"}
    common = ["--template", "t.j2", "--id-column", "id"]
    results: dict[str, Any] = {
        "rows": rows,
        "csv_mb": round(table.stat().st_size / 1e6, 1),
    }
    results["validate"] = timed([script, "validate", "big.csv", *common], work, env)
    print(f"  validate {rows:,} rows: {results['validate']}")
    results["run"] = timed(
        [
            script,
            "run",
            "big.csv",
            *common,
            "--base-url",
            url,
            "--concurrency",
            "64",
            "--progress",
            "off",
            "--no-report",
        ],
        work,
        env,
    )
    summary = json.loads((work / "big.summary.json").read_text())
    results["run"]["succeeded"] = summary["succeeded"]
    results["run"]["requests_per_s"] = summary["requests_per_s"]
    print(f"  run {rows:,} rows: {results['run']}")
    long_line = work / "long.jsonl"
    with open(long_line, "w") as fh:
        fh.write(json.dumps({"id": "a", "prompt": "x"}) + "\n")
        fh.write(json.dumps({"id": "huge", "prompt": "x" * 50_000_000}) + "\n")
        fh.write(json.dumps({"id": "b", "prompt": "y"}) + "\n")
    results["line_50mb"] = timed([script, "validate", "long.jsonl"], work, env)
    print(f"  validate a file with a 50 MB line: {results['line_50mb']}")
    return results
