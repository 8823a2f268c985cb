"""What the shards of one input read of one another in the directory they share."""

from __future__ import annotations

import os
import time
from pathlib import Path

from worker.domain.job import Shard
from worker.files.outputs import RunFiles
from worker.files.shards import SiblingsDone, WindowBoard


def files(tmp_path: Path, index: int) -> RunFiles:
    return RunFiles.default(
        "jobs.jsonl", shard=Shard(index, 2), directory=tmp_path, report=False
    )


def test_a_sibling_is_done_once_its_summary_is_newer_than_the_start(
    tmp_path: Path,
) -> None:
    since = time.time()
    mine, theirs = files(tmp_path, 0), files(tmp_path, 1)
    done = SiblingsDone(mine, since=since)
    assert done() is None  # nothing of it to see here
    theirs.results.write_text("")
    assert done() is False  # it runs where this machine sees it
    theirs.summary.write_text("{}")
    os.utime(theirs.summary, (since - 60, since - 60))
    assert done() is False  # a summary from an earlier run
    os.utime(theirs.summary, (since + 1, since + 1))
    assert done() is True
    assert SiblingsDone(RunFiles.default("jobs.jsonl"), since=since)() is None


def test_the_board_gives_the_others_part_of_the_same_window_only(
    tmp_path: Path,
) -> None:
    since = time.time() - 1
    mine = WindowBoard(files(tmp_path, 0), since=since)
    theirs = WindowBoard(files(tmp_path, 1), since=since)
    assert mine.others(10.0) is None  # the other has said nothing yet
    theirs.publish(12, 10.2)
    assert (tmp_path / "jobs.shard-1-of-2.window.json").exists()
    assert mine.others(10.0) == [12]
    assert mine.others(30.0) is None  # another reading of the window
    stale = WindowBoard(files(tmp_path, 0), since=time.time() + 60)
    assert stale.others(10.0) is None  # written before this run began
    (tmp_path / "jobs.shard-1-of-2.window.json").write_text("not json")
    assert mine.others(10.0) is None
