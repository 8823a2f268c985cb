"""The real image, built and run with podman (skipped where podman is absent).

    python -m pytest -m container -s tests/container

Builds the Dockerfile unchanged, then runs the demo as the image's non-root user,
a real batch against the simulator on the host network with the key from a
mounted secret file, `podman stop` in the middle of it (SIGTERM: exit 143 after
draining), and the resume, always with a read-only root file system and only
/data writable. It prints the image size.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import SENTINEL_KEY, assert_no_key, simple_jobs, write_jobs
from worker import __version__
from worker.sim.faults import Faults
from worker.sim.server import Simulator

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/mira-batch:test"
APP_UID = 10001

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is absent"),
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def image() -> str:
    build = subprocess.run(
        ["podman", "build", "--network", "host", "--pull=never", "-t", IMAGE, "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    size = subprocess.run(
        ["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"\nimage {IMAGE}: {int(size) / 1e6:.0f} MB")  # noqa: T201 - CI reports it
    return IMAGE


def data_dir(tmp_path: Path) -> Path:
    """A host directory the image's user may write, mounted as /data."""
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, APP_UID, APP_UID)
    return data


async def podman(*args: str, timeout_s: float = 300) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "podman",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["custom_id"] for line in path.read_bytes().splitlines()]


async def test_version_agrees_with_the_labels(image: str) -> None:
    code, out = await podman("run", "--rm", image, "--version")
    assert code == 0
    assert out.strip() == f"mira-batch {__version__}"
    code, labels = await podman(
        "image", "inspect", image, "--format", "{{json .Labels}}"
    )
    assert json.loads(labels)["org.opencontainers.image.version"] == __version__


async def test_the_demo_runs_as_non_root_on_a_read_only_root(
    image: str, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    code, out = await podman(
        "run", "--rm", "--read-only", "-v", f"{data}:/data", image, "demo"
    )
    assert code == 0, out
    results = data / "demo-output" / "example.results.jsonl"
    assert len(ids(results)) == 51
    assert results.stat().st_uid == APP_UID


async def test_a_real_batch_stops_on_podman_stop_and_resumes_exactly(
    image: str, sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=150)
    data = data_dir(tmp_path)
    write_jobs(data / "jobs.jsonl", simple_jobs(80))
    secret = tmp_path / "mira-key"
    secret.write_text(SENTINEL_KEY + "\n")
    os.chown(secret, APP_UID, APP_UID)
    secret.chmod(0o400)
    name = f"mira-batch-test-{os.getpid()}"
    run = [
        "--read-only",
        "--network",
        "host",
        "-v",
        f"{data}:/data",
        "-v",
        f"{secret}:/run/secrets/mira:ro",
        "-e",
        "MIRA_API_KEY_FILE=/run/secrets/mira",
        "-e",
        f"MIRA_BASE_URL={sim.base_url}",
        image,
        "run",
        "jobs.jsonl",
        "--progress",
        "off",
        "--concurrency",
        "3",
        "--log-format",
        "json",
    ]
    code, out = await podman("run", "-d", "--name", name, *run)
    assert code == 0, out
    try:
        async with asyncio.timeout(60):
            while len(ids(data / "jobs.results.jsonl")) < 6:
                await asyncio.sleep(0.05)
        code, out = await podman("stop", "-t", "30", name)
        assert code == 0, out
        code, exit_code = await podman("wait", name)
        assert exit_code.strip() == "143"
        code, logs = await podman("logs", name)
        assert_no_key(logs)
        assert json.loads(logs.splitlines()[-1])["summary"]["stop_reason"] == (
            "interrupted"
        )
    finally:
        await podman("rm", "-f", name)
    written = ids(data / "jobs.results.jsonl")
    assert 0 < len(written) < 80
    assert sim.stats.requests == len(written)  # in flight at the stop: drained

    code, out = await podman("run", "--rm", *run)
    assert code == 0, out
    assert_no_key(out)
    everything = ids(data / "jobs.results.jsonl") + ids(data / "jobs.errors.jsonl")
    assert Counter(everything) == Counter(f"job-{i}" for i in range(80))
    assert sim.stats.duplicate_successes == 0
    for path in data.iterdir():
        assert_no_key(path.read_bytes())
