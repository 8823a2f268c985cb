"""What an operator sees: a live bar on a terminal, status lines in files, JSON logs."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import termios
from pathlib import Path

import pytest

from tests.helpers import (
    SENTINEL_KEY,
    assert_no_key,
    cli_command,
    cli_env,
    run_batch,
    simple_jobs,
    write_jobs,
)
from worker.sim.faults import Faults
from worker.sim.server import Simulator

pytestmark = pytest.mark.e2e

ANSI = re.compile(rb"\x1b\[")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


FIELD = re.compile(
    r"(?:[━─]+ )?done \d+/(?:\d+~?|\?)(?: +\d+%)? ETA (?:-|\d+:\d\d|\d+h\d\dm) "
    r"[\d.]+ req/s|ok \d+ failed \d+|retrying \d+|in flight \d+/\d+|[\d,]+ tokens"
    r"|[\d,.]+ RUB|starting"
)


def display_lines(screen: bytes) -> list[str]:
    """The live display's lines, as a terminal shows them (escape codes stripped)."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", screen.decode("utf-8", "replace"))
    lines = [line.strip() for line in re.split(r"[\r\n]", text)]
    return [
        line
        for line in lines
        if line and ("req/s" in line or line.startswith(("ok ", "retrying ")))
    ]


async def _screen_of_a_run(sim: Simulator, directory: Path, columns: int) -> bytes:
    """What a terminal `columns` wide shows of a run of 30 jobs."""
    write_jobs(directory / "jobs.jsonl", simple_jobs(30))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = cli_env(base_url=sim.base_url, COLUMNS=str(columns), TERM="xterm-256color")
    proc = await asyncio.create_subprocess_exec(
        *cli_command("run", "jobs.jsonl", "--concurrency", "3"),
        cwd=directory,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    reader = asyncio.create_task(asyncio.to_thread(_read_all, master))
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    screen = await asyncio.wait_for(reader, 10)
    os.close(master)
    return screen


@pytest.mark.slow
async def test_the_live_display_fits_the_terminal_without_cutting_a_word(
    sim: Simulator, tmp_path: Path
) -> None:
    # A narrow terminal and a wide one at once: the runs mostly wait on the
    # server's latency.
    sim.faults = Faults(latency_ms=60)
    widths = (80, 160)
    screens = await asyncio.gather(
        *(_screen_of_a_run(sim, tmp_path / str(columns), columns) for columns in widths)
    )
    for columns, screen in zip(widths, screens, strict=True):
        assert_no_key(screen)
        assert ANSI.search(screen), "a terminal gets a drawn display"
        lines = display_lines(screen)
        done = {int(n) for n in re.findall(r"done (\d+)/", "\n".join(lines))}
        assert len(done) >= 3, ("the display updates while the run goes on", columns)
        for line in lines:
            assert len(line) <= columns, line
            for field in line.split(" · "):
                assert FIELD.fullmatch(field), (columns, line)
        last = [line for line in lines if "req/s" in line][-1]
        assert re.search(r"━{10,}", last), ("the bar, filled", columns)
        assert "done 30/30 100%" in last
        assert "ETA" in last
        if columns >= 120:
            assert any("in flight" in line and "req/s" in line for line in lines)


async def test_a_file_gets_periodic_status_lines_without_control_codes(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.faults = Faults(latency_ms=20)  # 14 rounds of 3: about 0.3 s
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(40))
    result = await run_batch(
        tmp_path,
        sim.base_url,
        "--progress",
        "auto",
        "--concurrency",
        "3",
        "--progress-interval",
        "0.05",
        in_process=True,
    )
    assert result.code == 0
    status = [line for line in result.stderr.splitlines() if "progress: done" in line]
    assert len(status) >= 3
    assert "retrying" in status[0]
    assert "tokens" in status[0]
    assert not ANSI.search(result.stderr.encode())
    assert "\r" not in result.stderr


@pytest.mark.parametrize(
    "scenario", ["faults_and_failures", "revoked_key", "bad_key", "invalid_lines"]
)
async def test_json_logs_are_one_object_per_stderr_line(
    sim: Simulator, tmp_path: Path, scenario: str
) -> None:
    jobs: list[object] = list(simple_jobs(40))
    key = SENTINEL_KEY
    if scenario == "faults_and_failures":
        sim.faults = Faults(seed=4, p500=0.05, p429=0.05, retry_after=0.05)
        jobs.append({"id": "refused", "prompt": "x", "x_sim_status": 400})
    elif scenario == "revoked_key":
        sim.faults = Faults(revoke_after=10)
    elif scenario == "bad_key":
        key = "sk-mira-not-hex-at-all"
    else:
        jobs += ["{broken", {"id": "job-1", "prompt": "duplicate"}]
    write_jobs(tmp_path / "jobs.jsonl", jobs)  # type: ignore[arg-type]
    result = await run_batch(
        tmp_path,
        sim.base_url,
        "--progress",
        "auto",
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--progress-interval",
        "0.05",
        key=key,
        in_process=True,
    )
    assert result.code in {1, 2, 3}
    lines = result.stderr.splitlines()
    assert lines
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"time", "level", "message"} <= set(record)
    assert any(r["level"] in {"warning", "error"} for r in records)
    assert_no_key(result.stderr, SENTINEL_KEY, key)
    if scenario == "faults_and_failures":
        (failed,) = [r for r in records if r.get("job_id") == "refused"]
        assert failed["level"] == "warning"
        assert failed["status"] == 400
        assert failed["attempt"] == 1
        assert any(r.get("attempt", 0) >= 1 and r["level"] == "debug" for r in records)
    if scenario != "bad_key":
        final = records[-1]
        assert final["summary"]["stop_reason"] in {"completed", "auth_failed"}
