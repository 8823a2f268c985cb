"""What the shards of one input tell one another through the directory they
share (an Indexed Job's volume, one machine's disk): that they are done (each
writes its summary at its end), and the window each learned, so that they can
keep to an even part of the account's window. Shards that cannot see each
other's files learn as if alone."""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson

from worker.files.outputs import RunFiles, atomic_write

BOARD_SUFFIX = ".window.json"


class SiblingsDone:
    """Whether the other shards of the input are done: True once each has
    written its summary since `since` (Unix time), so its requests no longer
    hold Mira's slots; False while one runs where this machine sees it (its
    results file is there); None when they cannot be seen at all."""

    __slots__ = ("_results", "_since", "_summaries")

    def __init__(self, files: RunFiles, *, since: float) -> None:
        self._summaries = files.sibling_summaries()
        self._results = [_beside(p, ".results.jsonl") for p in self._summaries]
        self._since = since

    def __call__(self) -> bool | None:
        if not self._summaries:
            return None
        for path in self._summaries:
            try:
                if path.stat().st_mtime < self._since:
                    return self._seen()
            except OSError:
                return self._seen()
        return True

    def _seen(self) -> bool | None:
        return False if any(p.exists() for p in self._results) else None


class WindowBoard:
    """Each shard's learned part of a sliding window, one small file each:
    `<stem>.shard-K-of-N.window.json` beside its summary."""

    __slots__ = ("_mine", "_others", "_since")

    def __init__(self, files: RunFiles, *, since: float) -> None:
        self._mine = _beside(files.summary, BOARD_SUFFIX)
        self._others = [_beside(p, BOARD_SUFFIX) for p in files.sibling_summaries()]
        self._since = since

    def publish(self, requests: int, window_s: float) -> None:
        """Say what this shard saw of the window (a failed write only means
        the others learn as if alone)."""
        entry = {"requests": requests, "window_s": window_s}
        with contextlib.suppress(OSError):
            atomic_write(self._mine, orjson.dumps(entry))

    def others(self, window_s: float) -> list[int] | None:
        """What every other shard saw of a window of `window_s`, once all have
        said it in this run; None until then."""
        seen = []
        for path in self._others:
            try:
                if path.stat().st_mtime < self._since:
                    return None
                entry = orjson.loads(path.read_bytes())
                requests, their_s = int(entry["requests"]), float(entry["window_s"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if abs(their_s - window_s) > 1.0:
                return None  # another reading of the window: no sum to make
            seen.append(requests)
        return seen


def _beside(summary: Path, suffix: str) -> Path:
    """A shard's other file, named as its summary is: `<stem><suffix>`."""
    return summary.with_name(summary.name.removesuffix(".summary.json") + suffix)
