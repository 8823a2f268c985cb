"""IdSet: a set of ids that stays compact."""

from __future__ import annotations

from worker.files.idset import IdSet


def test_add_and_contains() -> None:
    ids = IdSet()
    assert ids.add("a")
    assert not ids.add("a")
    assert "a" in ids
    assert "b" not in ids
    assert 5 not in ids
    assert len(ids) == 1


def test_grows_past_its_first_table_and_keeps_everything() -> None:
    ids = IdSet()
    for i in range(50_000):
        assert ids.add(f"job-{i}")
    assert len(ids) == 50_000
    assert all(f"job-{i}" in ids for i in range(0, 50_000, 7))
    assert "job-50000" not in ids


def test_uses_far_less_memory_than_a_set_of_str() -> None:
    ids = IdSet()
    for i in range(100_000):
        ids.add(f"some-fairly-long-job-identifier-{i}")
    assert ids.capacity * 8 < 2_000_000  # one 8-byte hash a slot


def test_sized_up_front_it_never_grows() -> None:
    ids = IdSet(expected=10_000)
    size = ids.capacity
    for i in range(10_000):
        ids.add(str(i))
    assert ids.capacity == size
