"""A compact set of job ids: 8 bytes a slot instead of ~100 bytes for a set of str.

Resume and duplicate detection are the only per-job state a run keeps, so on a
file of a million jobs this is what keeps memory flat. Ids are stored as 64-bit
hashes: two different ids collide with odds of about n^2 / 2^65 (3e-8 for a
million ids), which would make one job look like a duplicate.
"""

from __future__ import annotations

from array import array

_EMPTY = 0
_MASK64 = (1 << 64) - 1
_MIN_CAPACITY = 1024
_MAX_LOAD = 0.75
_GROWTH = 1.5


def _hash64(job_id: str) -> int:
    # str's own 64-bit SipHash: keyed per process, which is all a set that lives
    # for one run needs, and ~20x cheaper than hashlib.
    return (hash(job_id) & _MASK64) or 1


class IdSet:
    """An open-addressing set of id hashes in one flat array."""

    __slots__ = ("_count", "_slots")

    def __init__(self, expected: int = 0) -> None:
        # Sized for `expected` ids up front, it never grows (a growth briefly
        # holds the old and the new table: 2.5x the memory at that moment).
        capacity = max(_MIN_CAPACITY, int(expected / _MAX_LOAD) + 1)
        self._slots = array("Q", bytes(8 * capacity))
        self._count = 0

    @property
    def capacity(self) -> int:
        """Slots in the table now (it grows by doubling past its load factor)."""
        return len(self._slots)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, job_id: object) -> bool:
        if not self._count or not isinstance(job_id, str):
            return False  # an empty set (a fresh run) costs no hashing
        h = _hash64(job_id)
        return self._slots[_probe(self._slots, h)] == h

    def add(self, job_id: str) -> bool:
        """Add an id; True when it was not there before."""
        if (self._count + 1) > _MAX_LOAD * len(self._slots):
            self._grow()
        if _insert(self._slots, _hash64(job_id)):
            self._count += 1
            return True
        return False

    def _grow(self) -> None:
        old = self._slots
        new = array("Q", bytes(8 * int(len(old) * _GROWTH)))
        for h in old:
            if h != _EMPTY:
                _insert(new, h)
        self._slots = new


def _probe(slots: array[int], h: int) -> int:
    """The index holding h, or the empty slot where it would go (linear probing)."""
    size = len(slots)
    i = h % size
    while (value := slots[i]) != h and value != _EMPTY:
        i = i + 1 if i + 1 < size else 0
    return i


def _insert(slots: array[int], h: int) -> bool:
    i = _probe(slots, h)
    if slots[i] == h:
        return False
    slots[i] = h
    return True


def fingerprint64(fingerprint: str) -> int:
    """The first 64 bits of a request fingerprint (hex): enough to tell an edit."""
    return int(fingerprint[:16], 16) or 1


class FingerprintMap:
    """Job id -> the fingerprint its recorded outcome was for, 16 bytes a slot.

    Two parallel arrays with the set's probing: on a million records, tens of
    megabytes where a dict of str would take hundreds.
    """

    __slots__ = ("_count", "_keys", "_values")

    def __init__(self) -> None:
        self._keys = array("Q", bytes(8 * _MIN_CAPACITY))
        self._values = array("Q", bytes(8 * _MIN_CAPACITY))
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, job_id: str, fingerprint: str) -> None:
        """Record (or replace: the last record of an id is its current one)."""
        if (self._count + 1) > _MAX_LOAD * len(self._keys):
            self._grow()
        h = _hash64(job_id)
        i = _probe(self._keys, h)
        if self._keys[i] != h:
            self._keys[i] = h
            self._count += 1
        self._values[i] = fingerprint64(fingerprint)

    def get(self, job_id: str) -> int | None:
        """The 64-bit fingerprint recorded for the id, or None."""
        if not self._count:
            return None
        h = _hash64(job_id)
        i = _probe(self._keys, h)
        return self._values[i] if self._keys[i] == h else None

    def _grow(self) -> None:
        keys, values = self._keys, self._values
        size = int(len(keys) * _GROWTH)
        self._keys, self._values = (
            array("Q", bytes(8 * size)),
            array("Q", bytes(8 * size)),
        )
        for h, value in zip(keys, values, strict=True):
            if h != _EMPTY:
                i = _probe(self._keys, h)
                self._keys[i], self._values[i] = h, value
