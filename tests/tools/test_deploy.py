"""deploy/: every manifest validates offline, and keeps within one account's limit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy").glob("*.yaml"))
MIRA_IN_FLIGHT = 3  # per account, across keys and pods (MIRA_API.md)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_the_manifest_validates_against_the_kubernetes_schemas(manifest: Path) -> None:
    # What `kubernetes-validate --strict` does (CI runs that too), in this
    # process: the command's start is a third of a second for each manifest.
    from kubernetes_validate import utils  # type: ignore[import-untyped]

    resources = utils.resources_from_file(str(manifest))
    assert resources
    for resource in resources:
        try:
            utils.validate(resource, utils.latest_version(), strict=True)
        except utils.ValidationError as exc:
            path = ".".join(str(item) for item in exc.path)
            pytest.fail(f"{utils.kn(resource)}: {path}: {exc.message}")


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


def _spec(manifest: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(manifest.read_text())
    return document


def _job_spec(document: dict[str, Any]) -> dict[str, Any]:
    if document["kind"] == "CronJob":
        job: dict[str, Any] = document["spec"]["jobTemplate"]["spec"]
        return job
    spec: dict[str, Any] = document["spec"]
    return spec


@pytest.mark.parametrize(
    "manifest", [m for m in MANIFESTS if "cronjob" in m.name], ids=lambda p: p.name
)
def test_a_cronjob_starts_just_after_miras_daily_reset(manifest: Path) -> None:
    spec = _spec(manifest)["spec"]
    minute, hour, *_ = spec["schedule"].split()
    assert (hour, spec["timeZone"]) == ("0", "Etc/UTC")
    assert int(minute) <= 15
    assert "Exit 5" in manifest.read_text()  # what a stop at the cap means


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_a_job_that_retries_fails_at_once_on_the_key_or_the_balance(
    manifest: Path,
) -> None:
    job = _job_spec(_spec(manifest))
    retries = job.get("backoffLimit", 6) or job.get("backoffLimitPerIndex", 0)
    if not retries:
        return  # nothing is retried: exit 3 or 4 fails it already
    rules = job["podFailurePolicy"]["rules"]
    fail = [r for r in rules if r["action"] == "FailJob" and "onExitCodes" in r]
    assert fail, "exit 3 (the key) and 4 (the balance) must not be retried"
    assert {3, 4} <= set(fail[0]["onExitCodes"]["values"])


def test_a_one_shot_job_waits_for_each_day() -> None:
    job = _spec(ROOT / "deploy" / "job-until-done.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "--until-done" in container["args"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "MIRA_API_KEY_FILE" in env  # a rotated Secret is read again
