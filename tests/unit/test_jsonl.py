"""Reading job lines and writing result lines."""

from __future__ import annotations

import os
from pathlib import Path

from worker.files.jsonl import count_lines, iter_lines


async def test_iter_lines_numbers_lines_skips_blanks_and_keeps_a_last_unterminated_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a":1}\n\n  \n{"b":2}\r\n{"c":3}')
    with open(path, "rb") as fh:
        lines = [item async for item in iter_lines(fh)]
    assert lines == [(1, b'{"a":1}'), (4, b'{"b":2}\r'), (5, b'{"c":3}')]


async def test_iter_lines_reads_a_pipe_in_a_thread() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"x\ny\n")
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        lines = [item async for item in iter_lines(fh)]
    assert lines == [(1, b"x"), (2, b"y")]


def test_count_lines_leaves_the_position_alone(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"a\n" * 5000)
    with open(path, "rb") as fh:
        fh.readline()
        assert count_lines(fh) == 5000
        assert fh.readline() == b"a\n"
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as pipe:
        assert count_lines(pipe) == 0
    os.close(write_fd)
