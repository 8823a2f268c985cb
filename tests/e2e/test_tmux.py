"""`mira-batch demo` in tmux, as an operator sees it: the screen the run leaves
holds exactly one bar line, no log line glued to it, and a summary that fits."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import assert_no_key, cli_command, cli_env, need_tool

BAR = re.compile(r"[━─]{8,}")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (INFO|WARNING|ERROR) ")
DONE = "__demo_done__"


def tmux(socket: Path, *args: str) -> str:
    result = subprocess.run(
        ["tmux", "-S", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout


async def screen_after_demo(socket: Path, directory: Path, columns: int) -> str:
    """The demo run in a tmux window `columns` wide; its screen when it ended
    (wrapped lines joined, so a line the terminal had to wrap shows whole)."""
    command = shlex.join([*cli_command("demo"), "--output-dir", "out"])
    name = f"w{columns}"
    tmux(
        socket,
        "new-session",
        "-d",
        "-s",
        name,
        "-x",
        str(columns),
        "-y",
        "60",
        "-c",
        str(directory),
        f"{command}; echo {DONE}; sleep 60",
    )
    screen = ""
    for _ in range(300):
        screen = tmux(socket, "capture-pane", "-p", "-J", "-t", name)
        if DONE in screen:
            return screen
        await asyncio.sleep(0.1)
    raise AssertionError(f"the demo did not finish at {columns} columns:\n{screen}")


@pytest.mark.slow
async def test_the_demo_in_tmux_leaves_one_bar_and_no_glued_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("tmux") is None:
        need_tool("tmux", "tmux")
    for name, value in cli_env(key=None).items():
        monkeypatch.setenv(name, value)
    socket = tmp_path / "tmux.sock"
    # 80 columns, the narrowest common terminal; the live display test checks a
    # narrow and a wide one through a pty.
    columns = 80
    try:
        screen = await screen_after_demo(socket, tmp_path, columns)
    finally:
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False)
    assert_no_key(screen)
    lines = screen.splitlines()
    bars = [line for line in lines if BAR.search(line)]
    assert len(bars) == 1, screen
    assert "done 51/51 100%" in bars[0]
    for line in lines:
        found = LOG_LINE.search(line)
        if "INFO" in line or "WARNING" in line:
            assert found, ("a log line starts its own line", line)
        assert not (found and BAR.search(line)), line
    summary = lines[lines.index("mira-batch summary") :]
    table = [line for line in summary if line.startswith("  ")]
    assert len(table) >= 10
    for line in table:
        assert len(line) <= columns, ("the summary fits", line)
