"""The order the xdist workers are handed the tests in (tests/scheduling.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from tests.scheduling import longest_first, rank_of, worksteal_cuts


@dataclass(frozen=True)
class Case:
    """One collected test, as the scheduler sees it."""

    name: str
    kind: str  # a marker
    module: str


def collection() -> list[Case]:
    """A small suite in collection order: folders alphabetically, as pytest
    finds them."""
    tests = [Case(f"e2e-{i}", "e2e", f"e2e/m{i % 3}") for i in range(8)]
    tests += [Case(f"slow-e2e-{i}", "slow", "e2e/m9") for i in range(2)]
    tests += [Case(f"int-{i}", "integration", f"int/m{i // 6}") for i in range(30)]
    tests += [Case(f"slow-int-{i}", "slow", "int/m9") for i in range(3)]
    tests += [Case(f"tool-{i}", "tool", "tools/m") for i in range(4)]
    tests += [Case(f"unit-{i}", "unit", f"unit/m{i // 10}") for i in range(140)]
    return tests


def ordered(tests: list[Case], workers: int) -> list[list[Case]]:
    """The blocks worksteal hands out of the ordered collection."""
    order = longest_first(
        tests,
        workers,
        rank=lambda test: rank_of([test.kind]),
        module=lambda test: test.module,
    )
    ends = list(itertools.accumulate(worksteal_cuts(len(order), workers)))
    return [order[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_each_block_starts_with_its_share_of_the_long_tests_and_ends_quick(
    workers: int,
) -> None:
    tests = collection()
    blocks = ordered(tests, workers)
    assert sorted(t.name for block in blocks for t in block) == sorted(
        t.name for t in tests
    )
    long_ones = [t for t in tests if t.kind in ("slow", "e2e")]
    for block in blocks:
        kinds = [t.kind for t in block]
        dealt = kinds[: kinds.count("slow") + kinds.count("e2e")]
        assert dealt == sorted(dealt, key=("slow", "e2e").index)  # slow first
        assert len(dealt) in (len(long_ones) // workers, -(-len(long_ones) // workers))
        ranks = [rank_of([kind]) for kind in kinds]
        assert ranks == sorted(ranks)  # long to quick, within the block too
        assert "integration" in kinds  # the simulator's tests are spread
        assert kinds[-1] == "unit"


def test_a_module_of_the_simulators_or_the_tools_tests_stays_in_one_block() -> None:
    blocks = ordered(collection(), 3)
    for module in {t.module for t in collection() if t.kind in ("integration", "tool")}:
        holding = [
            i
            for i, block in enumerate(blocks)
            if any(t.module == module for t in block)
        ]
        assert len(holding) == 1, module


def test_the_same_collection_gives_the_same_order() -> None:
    assert ordered(collection(), 3) == ordered(collection(), 3)


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_fewer_tests_than_workers_or_no_quick_ones_lose_none(count: int) -> None:
    tests = [Case(f"e2e-{i}", "e2e", "e2e/m") for i in range(count)]
    order = [t for block in ordered(tests, 3) for t in block]
    assert sorted(t.name for t in order) == sorted(t.name for t in tests)


def test_worksteal_cuts_the_shorter_blocks_first() -> None:
    assert worksteal_cuts(749, 3) == [249, 250, 250]
    assert worksteal_cuts(2, 3) == [0, 1, 1]
    assert rank_of([]) > rank_of(["unit"]) > rank_of(["e2e"]) > rank_of(["slow", "e2e"])
