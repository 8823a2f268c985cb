"""Fixtures: the simulator on loopback; hooks: the key-leak check on every test."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING

import pytest

from tests.bytecode import compile_once
from tests.keys import SENTINEL_KEY, assert_no_key, without_keys
from tests.scheduling import longest_first, rank_of

if TYPE_CHECKING:
    # Imported by the fixtures: xdist's controller loads this file too, and
    # runs no test; its start (and so the workers') waits on what it imports.
    from tests.fakes import FakeClock
    from worker.sim.server import Simulator

# Rewritten test modules are cached even where the environment asks Python not
# to write bytecode (cli_env lets the processes the tests start cache theirs):
# compiling them again on every run costs seconds of the suite's 30.
sys.dont_write_bytecode = False

# Each folder is a kind of test; `-m` picks kinds (`-m "not e2e"`, `-m tool`).
_KIND_OF_FOLDER = {
    "unit": "unit",
    "tools": "tool",
    "integration": "integration",
    "e2e": "e2e",
    "container": "container",
}


def pytest_configure(config: pytest.Config) -> None:
    """xdist's controller compiles the suite once for its workers; temporary
    directories go to memory."""
    # xdist starts workers for a run it distributes (not for --collect-only).
    workers = len(getattr(config.option, "tx", None) or ())
    distributes = workers > 1 and not config.option.collectonly
    if distributes and not hasattr(config, "workerinput"):
        compile_once(
            config,
            [config.rootpath / "worker", config.rootpath / "tests"],
            ways=_usable_cpus(),
        )
    _temporary_directories_in_memory(config)


def _temporary_directories_in_memory(config: pytest.Config) -> None:
    """Temporary directories in memory (/dev/shm) where it has a gigabyte free.
    The runs fsync what they write, as they must; on this machine's disk that
    was 1.5 to 2 s of the suite's system time, and deleting an old run's
    directories half a second of its end. PYTEST_DEBUG_TEMPROOT (pytest's own
    setting) and --basetemp still choose."""
    if "PYTEST_DEBUG_TEMPROOT" in os.environ or config.option.basetemp:
        return
    try:
        room = os.statvfs("/dev/shm")
    except OSError:
        return
    if room.f_bavail * room.f_frsize >= 1 << 30:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = "/dev/shm"


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker more than the CPUs this process may use. A third of
    the e2e tests' time is spent waiting (on the processes they start, on real
    clocks), which the extra worker fills. On this 2-core machine: 2 workers
    32.3 to 33.1 s, 3 workers 28.8 to 31.8 s, 4 workers 29.6 to 33.4 s."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own override of the count
    return _usable_cpus() + 1


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tune this worker's collector as a mira-batch process tunes its own (the
    in-process runs leave it alone): what collection loaded (every test module,
    aiohttp, pydantic) is frozen, where each full collection walked it again, a
    tenth of a second or more at a time."""
    from worker.cli.run import tune_gc_for_throughput

    tune_gc_for_throughput()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Collect once what the tests left, then freeze the rest. pytest's check
    of unraisable exceptions still sees what this collection finds (its hook is
    in place until it unconfigures); after it, pytest's two collections as it
    unconfigures and the interpreter's at exit skip the frozen heap, which the
    SDK's import had made large: a second of the suite's end, the controller
    waiting for its workers to exit."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the kind its folder holds; under xdist, order the
    tests so that each worker's share begins with the long ones."""
    for item in items:
        kind = _KIND_OF_FOLDER.get(item.path.parent.name)
        if kind is not None:
            item.add_marker(kind)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        items[:] = longest_first(
            items,
            workers,
            rank=lambda item: rank_of(mark.name for mark in item.iter_markers()),
            module=lambda item: item.path,
        )


# What the machine's environment may say about reaching the network: no test
# takes it from there (the network tests set their own).
_NETWORK_VARIABLES = (
    *(f"{name}_proxy" for name in ("http", "https", "all", "no")),
    *(f"{name}_PROXY" for name in ("HTTP", "HTTPS", "ALL", "NO")),
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before each test's fixtures: none of the network settings, whatever the
    machine or an earlier test left (a hook; as an autouse fixture with
    monkeypatch it cost every test 0.6 ms, a second of the suite's CPU)."""
    for name in _NETWORK_VARIABLES:
        os.environ.pop(name, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Whatever a test, its fixtures or the code they run printed to either
    stream (at the descriptor: C code and children too) or logged at any level
    (`log_level` is DEBUG) must not hold a key. pytest already holds all of it
    for the report; a phase whose output holds a key fails, naming where.
    Under `-s` the streams are not captured and only the logs are checked; the
    tests that read a process's output check it themselves (finish_cli)."""
    report = yield
    for title, text in report.sections:
        if not title.endswith(f" {call.when}"):
            continue  # an earlier phase's output, checked in its own report
        try:
            assert_no_key(text)
        except AssertionError as leak:
            report.outcome = "failed"
            report.longrepr = f"{leak}: {title}"
            report.sections = [(t, without_keys(c)) for t, c in report.sections]
            break
    return report


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A fault-free simulator on 127.0.0.1 that accepts the sentinel key."""
    from worker.sim.faults import Faults
    from worker.sim.server import Simulator

    simulator = Simulator(keys=[SENTINEL_KEY], faults=Faults(seed=1))
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def clock() -> FakeClock:
    """One fake time for the server and the run, as on a real machine."""
    from tests.fakes import FakeClock

    return FakeClock()


@pytest.fixture
async def clocked_sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    """The simulator on 127.0.0.1, on the same fake time as the run."""
    from worker.sim.server import Simulator

    async with Simulator(keys=[SENTINEL_KEY], clock=clock, sleep=clock.sleep) as sim:
        yield sim
