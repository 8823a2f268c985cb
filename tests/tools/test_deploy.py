"""deploy/: every manifest validates offline, and keeps within one account's limit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy").glob("*.yaml"))
MIRA_IN_FLIGHT = 3  # per account, across keys and pods (MIRA_API.md)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_manifest_validates_against_the_kubernetes_schemas(manifest: Path) -> None:
    validate = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(validate), "--strict", "--quiet", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_requests_in_flight_stay_within_one_mira_account(manifest: Path) -> None:
    text = manifest.read_text()
    concurrency = re.search(
        r"name: MIRA_CONCURRENCY\s+(?:#.*\s+)*value: \"(\d+)\"", text
    )
    assert concurrency, "set MIRA_CONCURRENCY: the default (16) is over the cap"
    parallelism = re.search(r"^\s*parallelism: (\d+)", text, re.MULTILINE)
    pods = int(parallelism.group(1)) if parallelism else 1
    assert int(concurrency.group(1)) * pods <= MIRA_IN_FLIGHT
    assert "in flight" in text  # the comment that says why
