"""The controller's compile-once for its workers (tests/bytecode.py)."""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
from _pytest.assertion.rewrite import PYC_TAIL, _read_pyc

from tests.bytecode import compile_once, in_parallel


def test_test_modules_are_rewritten_and_the_rest_compiled(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    (tmp_path / "test_sums.py").write_text(
        "def test_sum():\n    total = 1 + 1\n    assert total == 3\n"
    )
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "test_broken.py").write_text("def test(:\n")

    compile_once(pytestconfig, [tmp_path], ways=1)

    code = _read_pyc(
        tmp_path / "test_sums.py", tmp_path / "__pycache__" / f"test_sums{PYC_TAIL}"
    )
    assert code is not None
    namespace: dict[str, object] = {}
    exec(code, namespace)
    with pytest.raises(AssertionError) as failed:
        namespace["test_sum"]()  # type: ignore[operator]
    assert "assert 2 == 3" in str(failed.value)  # pytest's rewritten assertion
    compiled = Path(importlib.util.cache_from_source(str(tmp_path / "helper.py")))
    assert compiled.exists()
    # The module that does not compile is left to the worker that imports it.
    assert sorted(p.name for p in (tmp_path / "__pycache__").iterdir()) == sorted(
        [f"test_sums{PYC_TAIL}", compiled.name]
    )


def test_a_second_pass_finds_the_work_done(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    module = tmp_path / "test_once.py"
    module.write_text("def test():\n    assert True\n")
    compile_once(pytestconfig, [tmp_path], ways=1)
    pyc = tmp_path / "__pycache__" / f"test_once{PYC_TAIL}"
    written = pyc.stat().st_mtime_ns
    os.utime(pyc, ns=(written - 10**9, written - 10**9))
    compile_once(pytestconfig, [tmp_path], ways=1)
    assert pyc.stat().st_mtime_ns == written - 10**9  # untouched
    module.write_text("def test():\n    assert False\n")
    compile_once(pytestconfig, [tmp_path], ways=1)
    assert pyc.stat().st_mtime_ns != written - 10**9  # the source changed


def test_every_path_is_worked_once_over_the_forked_processes(tmp_path: Path) -> None:
    paths = [tmp_path / f"m{n}.py" for n in range(7)]
    for size, path in enumerate(paths):
        path.write_text("#" * size)
    done = tmp_path / "done"
    done.mkdir()

    def mark(share: Sequence[Path]) -> None:
        for path in share:
            with (done / path.name).open("a") as worked:
                worked.write(f"{os.getpid()}\n")

    with warnings.catch_warnings():
        # Python 3.12 warns of a fork beside the worker's threads; the child
        # only writes files and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        in_parallel(mark, paths, ways=3)
    assert sorted(p.name for p in done.iterdir()) == sorted(p.name for p in paths)
    by = [(done / p.name).read_text().split() for p in paths]
    assert all(len(pids) == 1 for pids in by), by  # each path worked once
    workers = {pid for (pid,) in by}
    assert len(workers) == 3
    assert str(os.getpid()) in workers  # this process took a share too
