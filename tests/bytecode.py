"""The suite's bytecode made once, by xdist's controller, before its workers start.

On a fresh checkout every worker found no bytecode, and each compiled the package
and rewrote the assertions of every test module as it collected: the same 2.5 s
of CPU three times over, which put the first test at 4.7 to 5.9 s instead of
about 3 s on this 2-core machine. The controller now does that work once, split
over the CPUs, and the workers find it done. Warm, it costs a read and a hash of
each test module (a few hundredths of a second). It is a cache and nothing more:
a module it cannot compile (a syntax error, a read-only checkout) is left to the
worker that imports it, which reports it as pytest always has.

The assertion rewriting is pytest's own (`_pytest.assertion.rewrite`), written
where and as the workers read it; were that API to move, nothing is warmed and
the suite runs as it did before.
"""

from __future__ import annotations

import compileall
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest


def compile_once(config: pytest.Config, roots: Iterable[Path], *, ways: int) -> None:
    """Rewrite the test modules and compile the other modules under `roots`,
    over `ways` processes, where their cached bytecode is missing or stale."""
    try:
        rewrite_cached = _rewriter(config)
    except (ImportError, AttributeError, KeyError):
        return  # pytest moved its API, or rewrites no assertions (--assert=plain)
    paths = [path for root in roots for path in sorted(root.rglob("*.py"))]

    def work(share: Sequence[Path]) -> None:
        for path in share:
            try:
                if not rewrite_cached(path):
                    compileall.compile_file(path, quiet=2)
            except Exception:
                # A cache: whatever fails here (a syntax error, a read-only
                # checkout, pytest's own rewriter) the importing worker reports.
                continue

    in_parallel(work, paths, ways)


def in_parallel(
    work: Callable[[Sequence[Path]], None], paths: Sequence[Path], ways: int
) -> None:
    """`work` over `paths`, dealt largest first to `ways` forked processes (this
    one among them), so each gets about as many bytes to compile; in this one
    alone where there is no fork."""
    if not hasattr(os, "fork"):
        ways = 1
    largest_first = sorted(paths, key=_size, reverse=True)
    shares = [largest_first[index::ways] for index in range(max(1, ways))]
    children = []
    for share in shares[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                work(share)
            finally:
                os._exit(0)
        children.append(pid)
    try:
        work(shares[0])
    finally:
        for pid in children:
            os.waitpid(pid, 0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _rewriter(config: pytest.Config) -> Callable[[Path], bool]:
    """A function that says whether pytest rewrites a module's assertions (a
    conftest.py, a `python_files` match) and, if so, caches its rewritten code
    as pytest's import hook would, unless a cached copy matches the source."""
    from _pytest.assertion.rewrite import (
        PYC_TAIL,
        _read_pyc,
        _rewrite_test,
        _write_pyc,
        assertstate_key,
        get_cache_dir,
    )
    from _pytest.pathlib import fnmatch_ex

    state = config.stash[assertstate_key]
    patterns = config.getini("python_files")

    def rewrite_cached(path: Path) -> bool:
        if path.name != "conftest.py" and not any(
            fnmatch_ex(pattern, path) for pattern in patterns
        ):
            return False
        pyc = get_cache_dir(path) / (path.name[:-3] + PYC_TAIL)
        if _read_pyc(path, pyc) is None:
            source_hash, code = _rewrite_test(path, config)
            pyc.parent.mkdir(exist_ok=True)
            _write_pyc(state, code, source_hash, pyc)
        return True

    return rewrite_cached
