"""Shared test helpers: the sentinel key, job files, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tests.keys import OTHER_KEY as OTHER_KEY
from tests.keys import SENTINEL_KEY as SENTINEL_KEY
from tests.keys import assert_no_key as assert_no_key
from worker.config import Settings


def write_jobs(path: Path, lines: Iterable[Mapping[str, Any] | str | bytes]) -> Path:
    """Write job lines; dicts become JSON, str/bytes are written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for line in lines:
            if isinstance(line, bytes):
                fh.write(line + b"\n")
            elif isinstance(line, str):
                fh.write(line.encode() + b"\n")
            else:
                fh.write(json.dumps(line).encode() + b"\n")
    return path


def simple_jobs(n: int, *, prefix: str = "job", start: int = 0) -> list[dict[str, Any]]:
    """n simple-shape jobs with unique prompts and metadata."""
    return [
        {
            "id": f"{prefix}-{i}",
            "prompt": f"prompt number {i} of {prefix}",
            "metadata": {"n": i},
        }
        for i in range(start, start + n)
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file (missing file = no lines); fails on a bad line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class CliResult:
    """A finished `mira-batch` process."""

    code: int
    stdout: str
    stderr: str


def cli_env(
    key: str | None = SENTINEL_KEY, base_url: str | None = None, **extra: str
) -> dict[str, str]:
    """An environment with no MIRA_* from the outside world."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRA_")}
    env.pop("JOB_COMPLETION_INDEX", None)
    # Every process the suite starts imports the package: cached bytecode
    # saves each one compiling it again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    if key is not None:
        env["MIRA_API_KEY"] = key
    if base_url is not None:
        env["MIRA_BASE_URL"] = base_url
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    """The installed `mira-batch` console script: what the container runs too."""
    script = Path(sys.executable).with_name("mira-batch")
    if not script.exists():  # not installed as a script: the same code path
        return [sys.executable, "-m", "worker", *args]
    return [str(script), *args]


async def start_cli(
    *args: str, cwd: Path, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Start `mira-batch ARGS` without blocking the loop serving the simulator."""
    return await asyncio.create_subprocess_exec(
        *cli_command(*args),
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish_cli(
    proc: asyncio.subprocess.Process, *, cwd: Path | None = None, timeout_s: float = 60
) -> CliResult:
    """Wait for a started CLI; check that its output, and files in cwd, hold no key."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    assert_no_key(out)
    assert_no_key(err)
    if cwd is not None:
        assert_no_key_in_files(cwd)
    return CliResult(proc.returncode, out.decode(), err.decode())


async def run_cli(
    *args: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float = 60,
    in_process: bool = False,
) -> CliResult:
    """Run the CLI to completion: as a process, or (`in_process`, where no
    process is the point: no signal, no stdin, no memory measured) through the
    same `main()` on a thread of this one, which saves starting and importing
    Python for each run."""
    if in_process:
        async with asyncio.timeout(timeout_s):
            result = await asyncio.to_thread(_main_in_thread, args, cwd, env)
        assert_no_key_in_files(cwd)
        return result
    proc = await start_cli(*args, cwd=cwd, env=env)
    return await finish_cli(proc, cwd=cwd, timeout_s=timeout_s)


def _configures_a_run(name: str) -> bool:
    return name.startswith("MIRA_") or name == "JOB_COMPLETION_INDEX"


_IN_PROCESS = threading.Lock()  # one in-process run at a time: cwd, env, logging


@contextmanager
def logging_restored() -> Iterator[None]:
    """The root logger's handlers and level, and warnings' capture, as they were
    before `main()` set up a run's logging."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


def _call_main(args: tuple[str, ...]) -> CliResult:
    """`main(args)` with its standard streams captured and its logging undone
    after, but not its collector tuning: `tune_gc_for_throughput` is for a
    process of its own. Here it would collect the whole test process at each
    run (seconds of the suite) and freeze the cycles the leak checks look for."""
    import contextlib
    import io
    from unittest import mock

    import worker.cli.run
    from worker.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        logging_restored(),
        mock.patch.object(worker.cli.run, "tune_gc_for_throughput", return_value=None),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as exc:  # --help
            code = int(exc.code or 0)
    assert_no_key(out.getvalue())
    assert_no_key(err.getvalue())
    return CliResult(code, out.getvalue(), err.getvalue())


def _main_in_thread(
    args: tuple[str, ...], cwd: Path, env: Mapping[str, str]
) -> CliResult:
    """`main(args)` with the working directory and MIRA_* environment a process
    would have; both put back afterwards."""
    with _IN_PROCESS:
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        for name in [k for k in os.environ if _configures_a_run(k)]:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if _configures_a_run(k)})
        os.chdir(cwd)
        try:
            return _call_main(args)
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def assert_no_key_in_files(directory: Path) -> None:
    """No file under directory (outputs, summaries, logs) holds a test key."""
    for path in directory.rglob("*"):
        if path.is_file():
            assert_no_key(path.read_bytes())


def assert_outputs_clean(directory: Path) -> None:
    """No file the run wrote holds a key, and every JSONL line parses."""
    assert_no_key_in_files(directory)
    for path in directory.rglob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            json.loads(line)


async def run_batch(
    cwd: Path,
    base_url: str,
    *extra: str,
    key: str | None = SENTINEL_KEY,
    timeout_s: float = 60,
    in_process: bool = False,
    **env: str,
) -> CliResult:
    """`mira-batch run jobs.jsonl --progress off EXTRA` against base_url."""
    return await run_cli(
        "run",
        "jobs.jsonl",
        "--progress",
        "off",
        *extra,
        cwd=cwd,
        env=cli_env(key=key, base_url=base_url, **env),
        timeout_s=timeout_s,
        in_process=in_process,
    )


class GivenSettings(Settings):
    """Settings from the values a test gives and the defaults alone. No MIRA_*
    variable of the machine's and no .env file can pace, stop or reroute a run
    a test starts; and one is made in 0.8 ms, not 4.3 ms (pydantic-settings
    inspects every field for the environment each time: a second of the
    suite's CPU over its 250 in-process runs). test_config covers the sources."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def run_settings(base_url: str, **overrides: Any) -> Settings:
    """Settings for an in-process run: the sentinel key, the overrides and the
    defaults, no progress display."""
    values: dict[str, Any] = {
        "api_key": SecretStr(SENTINEL_KEY),
        "base_url": base_url,
        "progress": "off",
        **overrides,
    }
    return GivenSettings(**values)


def call_main(
    *args: str, cwd: Path, env: Mapping[str, str], monkeypatch: Any
) -> CliResult:
    """`mira-batch ARGS` in this process, through the same `main()`, with the
    working directory and the environment that configures a run (MIRA_*, a
    Kubernetes job's index) a process would have."""
    for name in [k for k in os.environ if _configures_a_run(k)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if _configures_a_run(name):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    return _call_main(args)


@asynccontextmanager
async def chat_route(
    handler: Callable[[Any], Awaitable[Any]],
) -> AsyncIterator[str]:
    """A throwaway server on 127.0.0.1 answering `POST /v1/chat/completions` with
    `handler`; yields its base URL."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def need_tool(what: str, package: str) -> NoReturn:
    """Skip a test whose program is missing; in `.ci/run` (MIRA_REQUIRE_TOOLS),
    which installs it, fail instead: there it must never be skipped."""
    message = f"this test needs {what}: apt-get install {package}"
    if os.environ.get("MIRA_REQUIRE_TOOLS"):
        raise AssertionError(message + " (.ci/run installs it)")
    pytest.skip(message)


def collect_file(
    source: Path,
    to: Path,
    *,
    results: Path,
    errors: Path,
    prices: Any,
    settings: Settings | None = None,
) -> Any:
    """collect over a job file (or a table, with the settings' template), as
    `mira-batch collect` reads it."""
    from worker.collect.join import collect
    from worker.files.jobs import rules_for
    from worker.files.jsonl import open_input
    from worker.files.sources import open_source

    settings = settings or GivenSettings()
    fh = open_input(str(source))
    try:
        jobs = open_source(fh, str(source), settings, rules_for(settings))
        return collect(
            jobs, str(source), to, results=results, errors=errors, prices=prices
        )
    finally:
        fh.close()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `predicate` until it holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def read_summary(path: Path) -> dict[str, Any]:
    """A summary file, as JSON."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data
