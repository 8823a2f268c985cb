"""The single writer: lines reach the OS at once, files are private, failures stop."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from worker.errors import OutputError
from worker.files.writer import ResultWriter


def test_each_line_reaches_the_file_before_write_returns(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "r.jsonl", tmp_path / "e.jsonl")
    writer.open()
    writer.write_result({"custom_id": "a"})
    writer.write_error({"custom_id": "b"})
    assert (tmp_path / "r.jsonl").read_bytes() == b'{"custom_id":"a"}\n'
    assert (tmp_path / "e.jsonl").read_bytes() == b'{"custom_id":"b"}\n'
    writer.close()
    writer.close()


def test_new_files_are_private(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "r.jsonl", tmp_path / "e.jsonl")
    writer.open()
    writer.close()
    for name in ("r.jsonl", "e.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_an_existing_files_mode_is_kept(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_bytes(b"")
    (tmp_path / "r.jsonl").chmod(0o640)
    writer = ResultWriter(tmp_path / "r.jsonl", tmp_path / "e.jsonl")
    writer.open()
    writer.close()
    assert stat.S_IMODE((tmp_path / "r.jsonl").stat().st_mode) == 0o640


def test_a_full_disk_is_reported_once_and_every_later_line_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[OutputError] = []
    writer = ResultWriter(
        tmp_path / "r.jsonl", tmp_path / "e.jsonl", on_failure=failures.append
    )
    writer.open()
    writer.write_result({"custom_id": "kept"})
    real_write = os.write

    def full(fd: int, data: bytes | memoryview) -> int:
        # Half the line fits, then the disk is full.
        if len(data) > 8:
            return real_write(fd, bytes(data[:8]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("worker.files.writer.os.write", full)
    with pytest.raises(OutputError, match="No space left on device"):
        writer.write_result({"custom_id": "torn"})
    monkeypatch.setattr("worker.files.writer.os.write", real_write)
    with pytest.raises(OutputError):
        writer.write_error({"custom_id": "after"})
    writer.close()
    assert len(failures) == 1
    assert "r.jsonl" in str(failures[0])
    # The record written before stays whole; the torn one is the last line.
    lines = (tmp_path / "r.jsonl").read_bytes().split(b"\n")
    assert lines[0] == b'{"custom_id":"kept"}'
    assert (tmp_path / "e.jsonl").read_bytes() == b""


async def test_an_fsync_error_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[OutputError] = []
    writer = ResultWriter(
        tmp_path / "r.jsonl", tmp_path / "e.jsonl", on_failure=failures.append
    )
    writer.open()
    writer.write_result({"custom_id": "a"})

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("worker.files.writer.os.fsync", broken)
    await writer.sync()
    writer.close()
    assert len(failures) == 1
    assert "Input/output error" in str(failures[0])
