"""Headless Chromium for the report tests: the page as the browser built it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import need_tool


@dataclass(frozen=True)
class Rendered:
    """What the browser made of a page."""

    dom: str

    def body(self, attribute: str) -> str:
        found = re.search(rf'<body[^>]*\b{attribute}="([^"]*)"', self.dom)
        assert found, f"no {attribute} on <body>: {self.dom[:300]!r}"
        return found.group(1)

    @property
    def canvases(self) -> int:
        return self.dom.count("<canvas")


# Chromium's headless shell first: the old headless mode on its own, made for
# this (a page and its scripts, no browser around them). Debian's 156 renders
# the faults report in about 0.9 s of CPU; the full browser's --headless took
# 2.4 to 2.8 s (in one process, against the shell's 0.6) for the same DOM, but
# for the charts' widths, 20 px apart.
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    return need_tool("headless Chromium", "chromium-headless-shell")


def render(page: Path) -> Rendered:
    """Open `page` in headless Chromium, with every host name unresolvable, and
    return the DOM once its scripts have run."""
    with tempfile.TemporaryDirectory(prefix="mira-chromium-") as profile:
        result = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",  # the test may run as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                # No zygote: the renderer is the browser's own child, reaped
                # with it. Not --single-process: it saves a third of the CPU a
                # page, but the shell hit a CHECK (SIGTRAP) in 2 of 40 renders
                # of the faults report with the CPUs busy; 0 of 80 without it.
                "--no-zygote",
                "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return Rendered(result.stdout.decode())
