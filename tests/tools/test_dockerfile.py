"""The container image: what the Dockerfile promises, checked without Docker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def instructions(name: str) -> list[str]:
    return [
        line[len(name) :].strip()
        for line in INSTRUCTIONS
        if line.startswith(name + " ")
    ]


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_multi_stage_on_a_slim_python() -> None:
    bases = instructions("FROM")
    assert len(bases) >= 2
    assert all(re.match(r"python:3\.1[1-9]-slim", base) for base in bases)


def test_runs_as_a_non_root_user() -> None:
    (user,) = instructions("USER")
    assert user.split(":")[0] not in {"0", "root"}


def test_exec_form_entrypoint_is_the_console_script() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["mira-batch"]


def test_data_is_the_working_directory() -> None:
    assert instructions("WORKDIR")[-1] == "/data"


def test_no_key_is_baked_in() -> None:
    assert "MIRA_API_KEY" not in " ".join(instructions("ENV") + instructions("ARG"))
    assert not re.search(r"sk-mira-[0-9a-fA-F]{40}", DOCKERFILE)


def test_installs_the_locked_dependencies_by_hash_then_the_project_alone() -> None:
    locked, project = [r for r in instructions("RUN") if "pip install" in r]
    assert "python -m venv" in locked
    assert "--require-hashes -r requirements.lock" in locked
    assert re.search(r"pip install --no-cache-dir --no-deps \.$", project)
    lock = (ROOT / "requirements.lock").read_text()
    assert "--hash=sha256:" in lock
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()
        assert re.search(rf"^{name}==", lock, re.MULTILINE), name


def test_labels_name_the_source_version_and_licence() -> None:
    import tomllib

    from worker import __version__

    labels = dict(
        re.findall(r'org\.opencontainers\.image\.(\w+)="([^"]*)"', DOCKERFILE)
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert labels["version"] == __version__
    assert labels["licenses"] == project["license"]
    assert labels["source"] == project["urls"]["Source"]


def test_dockerignore_keeps_secrets_and_outputs_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (
        ".env*",
        ".git",
        "*.results.jsonl",
        "*.errors.jsonl",
        "demo-output",
    ):
        assert pattern in ignored
