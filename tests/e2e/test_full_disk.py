"""A real full disk: outputs on a 48 KiB tmpfs (root mounts it; skipped elsewhere)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_batch, simple_jobs, write_jobs
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.e2e


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def whole_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_bytes().split(b"\n"):
        try:
            ids.append(json.loads(line)["custom_id"])
        except ValueError:
            continue
    return ids


async def test_a_full_disk_exits_7_without_a_traceback_and_resumes_exactly(
    sim: Simulator, tmp_path: Path, tiny_disk: Path
) -> None:
    sim.faults = Faults(latency_ms=2)
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(400))
    outputs = (
        "-o",
        "out/r.jsonl",
        "--errors",
        "out/e.jsonl",
        "--summary",
        "out/s.json",
    )
    (tmp_path / "out").symlink_to(tiny_disk)
    full = await run_batch(tmp_path, sim.base_url, *outputs)
    assert full.code == 7, full.stderr
    assert "Traceback" not in full.stderr
    assert "No space left on device" in full.stderr
    assert "could not write the summary" in full.stderr
    kept = whole_ids(tiny_disk / "r.jsonl")
    assert 0 < len(kept) < 400

    # The operator moves the files to a roomy disk and runs the same command.
    (tmp_path / "out").unlink()
    shutil.copytree(tiny_disk, tmp_path / "out")
    again = await run_batch(tmp_path, sim.base_url, *outputs, in_process=True)
    assert again.code == 0, again.stderr
    ids = whole_ids(tmp_path / "out/r.jsonl") + whole_ids(tmp_path / "out/e.jsonl")
    assert Counter(ids) == Counter(f"job-{i}" for i in range(400))
    assert set(kept) <= set(whole_ids(tmp_path / "out/r.jsonl"))
