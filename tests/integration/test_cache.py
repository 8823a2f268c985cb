"""--cache: answers reused across runs by request fingerprint, shared safely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.batch import Batch
from tests.helpers import call_main, cli_env, write_jobs
from worker.sim.server import Simulator


def jobs(prefix: str, questions: range) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{q}", "prompt": f"question {q}"} for q in questions]


async def test_a_second_batch_sends_only_what_the_cache_lacks(
    sim: Simulator, tmp_path: Path
) -> None:
    cache = tmp_path / "answers.sqlite"
    first = Batch(sim, tmp_path / "first")
    write_jobs(first.dir / "jobs.jsonl", jobs("a", range(50)))
    assert await first.run(cache=cache) == 0
    assert sim.stats.requests == 50
    assert first.summary["cache_misses"] == 50

    second = Batch(sim, tmp_path / "second")  # shares questions 20..49 (30 of them)
    write_jobs(second.dir / "jobs.jsonl", jobs("b", range(20, 90)))
    assert await second.run(cache=cache) == 0
    assert sim.stats.requests == 50 + 40  # only the 40 it lacks
    summary = second.summary
    assert (summary["cache_hits"], summary["cache_misses"]) == (30, 40)
    assert summary["succeeded"] == 70
    cached = {r["request_fingerprint"]: r for r in first.results}
    hits = [r for r in second.results if r.get("cached")]
    assert len(hits) == 30
    for record in hits:
        assert record["response"] == cached[record["request_fingerprint"]]["response"]
    # Hits cost nothing: the tokens are those of the 40 sent.
    sent = [r for r in second.results if not r.get("cached")]
    tokens = sum(r["response"]["body"]["usage"]["total_tokens"] for r in sent)
    assert summary["tokens"]["total"] == tokens


def test_cache_stats_and_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.domain.answer import Answer
    from worker.files.cache import AnswerCache

    path = tmp_path / "answers.sqlite"
    with AnswerCache(path) as cache:
        cache.put("f" * 64, Answer(200, {"choices": []}, "r"))
    assert path.stat().st_mode & 0o777 == 0o600  # it holds answers
    stats = call_main(
        "cache",
        "stats",
        str(path),
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert stats.code == 0
    assert "1 answers" in stats.stdout
    pruned = call_main(
        "cache",
        "prune",
        str(path),
        "--older-than",
        "0",
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert pruned.code == 0
    assert "removed 1 answers" in pruned.stdout
    assert "0 answers" in pruned.stdout
    missing = call_main(
        "cache",
        "stats",
        str(tmp_path / "none"),
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert missing.code == 2
