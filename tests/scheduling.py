"""The order the xdist workers are handed the tests in: the long ones first.

xdist's worksteal hands each worker one contiguous block of the collection (as
long as it cuts them, the shorter first) and lets an idle worker take the back
half of the longest queue left. A 4 s test dealt late had one worker running
alone for 2 to 3 s at the suite's end. So the collection is ordered to put, at
each block's front in turn, the slow tests and the processes one by one; then
the simulator's and the tools' tests a module at a time, to the shortest block
(a module's tests share what they import lazily: kubernetes-validate, trustme,
Jinja2); then in-process tests to each block's length. What is run last, by a
block's owner or a thief, is quick.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

# What usually makes a test long, most first: marked slow, a process, the
# simulator, a tool, in-process alone (and anything unmarked).
RANK = {"slow": 0, "e2e": 1, "integration": 2, "tool": 3, "container": 3, "unit": 4}
_UNMARKED = 5
_DEALT_ONE_BY_ONE = RANK["e2e"]
_DEALT_BY_MODULE = RANK["tool"]


def rank_of(markers: Iterable[str]) -> int:
    """A test's rank: its longest-running marker's."""
    return min((RANK.get(name, _UNMARKED) for name in markers), default=_UNMARKED)


def worksteal_cuts(count: int, workers: int) -> list[int]:
    """How long worksteal makes each worker's first block of `count` tests."""
    sizes, left = [], count
    for index in range(workers):
        size = left // (workers - index)
        sizes.append(size)
        left -= size
    return sizes


def longest_first(
    items: Sequence[T],
    workers: int,
    *,
    rank: Callable[[T], int],
    module: Callable[[T], Hashable],
) -> list[T]:
    """`items` reordered so that each of the `workers` blocks worksteal cuts
    begins with its share of the long tests and ends with quick ones. The same
    items in the same order always give the same result, as xdist requires of
    its workers' collections."""
    blocks: list[list[T]] = [[] for _ in range(workers)]
    groups: dict[tuple[int, Hashable], list[T]] = {}
    for item in items:
        groups.setdefault((rank(item), module(item)), []).append(item)
    quick: list[T] = []
    for (level, _), group in sorted(groups.items(), key=lambda kv: kv[0][0]):
        if level <= _DEALT_ONE_BY_ONE:
            for item in group:
                min(blocks, key=len).append(item)
        elif level <= _DEALT_BY_MODULE:
            min(blocks, key=len).extend(group)
        else:
            quick.extend(group)
    for block, size in zip(blocks, worksteal_cuts(len(items), workers), strict=True):
        take = max(0, size - len(block))
        block.extend(quick[:take])
        quick = quick[take:]
    blocks[-1].extend(quick)  # only where the longer tests overfill the blocks
    return [item for block in blocks for item in block]
