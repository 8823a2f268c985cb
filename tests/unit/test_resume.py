"""The output files as checkpoint: torn lines, done ids, --fresh, --retry-failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.files.resume import (
    load_resume_state,
    release_failed,
    repair_trailing_line,
    start_fresh,
)


def line(custom_id: str | None, **extra: object) -> str:
    return json.dumps({"id": "r", "custom_id": custom_id, **extra}) + "\n"


def test_torn_last_line_is_dropped_and_whole_lines_kept(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(line("a") + line("b") + '{"id": "r", "custom_id": "c", "resp')
    assert repair_trailing_line(path) > 0
    assert path.read_text() == line("a") + line("b")
    assert repair_trailing_line(path) == 0


def test_file_that_is_only_a_torn_line_becomes_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"custom_id": "x", ' * 10_000)
    repair_trailing_line(path)
    assert path.read_bytes() == b""


def test_missing_files_mean_nothing_done(tmp_path: Path) -> None:
    state = load_resume_state(tmp_path / "r.jsonl", tmp_path / "e.jsonl")
    assert len(state.done) == 0
    assert state.invalid_lines == set()


def test_done_ids_come_from_both_files_and_invalid_lines_by_number(
    tmp_path: Path,
) -> None:
    results, errors = tmp_path / "r.jsonl", tmp_path / "e.jsonl"
    results.write_text(line("a") + line("b") + "\n")
    errors.write_text(line("c") + line(None, line=7) + "garbage\n" + line("d")[:-5])
    state = load_resume_state(results, errors)
    assert {"a", "b", "c"} <= {i for i in "abcd" if i in state.done}
    assert "d" not in state.done  # torn, so it runs again
    assert state.invalid_lines == {7}
    assert (state.succeeded, state.failed) == (2, 2)


def test_fresh_refuses_to_discard_results_without_force(tmp_path: Path) -> None:
    results, errors = tmp_path / "r.jsonl", tmp_path / "e.jsonl"
    results.write_text(line("a"))
    with pytest.raises(ConfigError, match="--force"):
        start_fresh([results, errors], force=False)
    assert results.read_text() == line("a")
    start_fresh([results, errors], force=True)
    assert results.read_text() == ""


def test_fresh_on_empty_files_needs_no_force(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text("")
    start_fresh([results, tmp_path / "e.jsonl"], force=False)


def test_retry_failed_empties_the_errors_file_atomically(tmp_path: Path) -> None:
    errors = tmp_path / "e.jsonl"
    errors.write_text(line("a") + line("b"))
    assert release_failed(errors) == 2
    assert errors.read_text() == ""
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert release_failed(tmp_path / "missing.jsonl") == 0
