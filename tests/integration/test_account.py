"""Planning against the account (`validate --online`) and the prices charged:
the summary's cost equals what the server billed, to the kopeck."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.batch import Batch
from tests.helpers import CliResult, call_main, chat_route, cli_env, write_jobs
from worker.sim.faults import Faults, charge_kopecks
from worker.sim.server import Simulator


def varied_jobs(n: int) -> list[dict[str, Any]]:
    """Jobs of many lengths, across two models, so per-answer flooring shows."""
    return [
        {
            "id": f"j{i}",
            "model": "mira" if i % 3 else "mira-pro",
            "prompt": " ".join(f"w{k}" for k in range(7 + (i * 37) % 290)),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "faults",
    [
        Faults(seed=2),
        # 200s that are no answer are billed too: their tokens count.
        Faults(seed=9, p_upstream_error=0.1, p_moderated=0.05, p_empty=0.05),
    ],
    ids=["answers", "with_bad_answers"],
)
async def test_the_summary_cost_is_what_the_server_charged(
    sim: Simulator, tmp_path: Path, faults: Faults
) -> None:
    sim.faults = faults
    write_jobs(tmp_path / "jobs.jsonl", varied_jobs(60))
    batch = Batch(sim, tmp_path)
    assert await batch.run() in (0, 1)
    cost = batch.summary["cost"]
    assert cost["prices"] == "charged"
    charged = sim.stats.account["charged_kopecks"]
    assert charged > 0
    assert round(cost["total"] * 100) == charged
    assert cost["total"] == charged / 100
    # The same words priced in one sum per model come to more than was billed:
    # only pricing each answer as it came matches the server.
    summed = sum(
        charge_kopecks(model, m["prompt_tokens"], m["completion_tokens"])
        for model, m in cost["by_model"].items()
    )
    assert summed > charged


async def test_without_the_pricing_route_the_summary_says_list_prices(
    tmp_path: Path,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 1000},
            }
        )

    write_jobs(tmp_path / "jobs.jsonl", varied_jobs(3))
    async with chat_route(answer) as base_url:
        batch = Batch(None, tmp_path)  # type: ignore[arg-type]
        assert await batch.run(base_url=base_url) == 0
    cost = batch.summary["cost"]
    assert cost["prices"] == "list"
    # 2 mira answers at 50+150 RUB per million words, 1 mira-pro at 100+300
    assert cost["total"] == pytest.approx(2 * 0.2 + 0.4)


async def validate(
    tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch, *flags: str
) -> CliResult:
    """`mira-batch validate --online` in a thread: the loop keeps serving."""
    return await asyncio.to_thread(
        call_main,
        "validate",
        "jobs.jsonl",
        "--online",
        *flags,
        cwd=tmp_path,
        env=cli_env(base_url=base_url),
        monkeypatch=monkeypatch,
    )


async def test_validate_online_plans_the_batch_against_the_account(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.faults = Faults(plan="pro", daily_cap=500, balance_kopecks=20)
    write_jobs(tmp_path / "jobs.jsonl", varied_jobs(1200))
    before = sim.stats.requests
    result = await validate(tmp_path, sim.base_url, monkeypatch)
    assert result.code == 0, result.stderr
    assert sim.stats.requests == before  # no completion was sent
    text = result.stdout
    assert "plan: pro" in text
    assert "0 used, 500 left today (cap 500" in text
    assert "balance: 0.20 RUB; overage billing off" in text
    assert "prices: charged" in text
    # 1,200 jobs + 3% is 1,236 messages: 500 today, then 500 and 236.
    assert "messages needed: about 1,236" in text
    finish = datetime.now(UTC).date() + timedelta(days=2)
    assert f"days at the daily cap: 3, finishing {finish.isoformat()}" in text
    assert "warning: the balance (0.20 RUB) will not cover the batch" in text
    assert "400 jobs use mira-pro" not in text  # the pro plan may use it

    as_json = await validate(tmp_path, sim.base_url, monkeypatch, "--format", "json")
    document = json.loads(as_json.stdout)
    account = document["account"]
    assert account["daily_left"] == 500
    assert account["days"] == 3
    assert date.fromisoformat(account["finish_date"]) == finish
    assert account["balance_rub"] == 0.2
    assert document["prices"] == "charged"
    assert any("will not cover" in w for w in account["warnings"])

    # 100 of each day left to people: 400 today, then 400, 400 and 36.
    reserved = await validate(
        tmp_path, sim.base_url, monkeypatch, "--daily-reserve", "100"
    )
    later = datetime.now(UTC).date() + timedelta(days=3)
    assert (
        f"days at the daily cap: 4, finishing {later.isoformat()} (UTC); 100 of "
        "each day left to the people on the account (--daily-reserve)"
    ) in reserved.stdout


async def test_validate_online_warns_of_a_model_above_the_plan(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.faults = Faults(plan="free", daily_cap=20)
    write_jobs(tmp_path / "jobs.jsonl", varied_jobs(9))
    result = await validate(tmp_path, sim.base_url, monkeypatch)
    assert result.code == 0
    assert "3 jobs use mira-pro, which needs the pro plan" in result.stdout
    assert "days at the daily cap: 1" in result.stdout


async def test_validate_online_without_account_routes_says_so_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        raise AssertionError("validate sent a completion")

    write_jobs(tmp_path / "jobs.jsonl", varied_jobs(5))
    async with chat_route(refuse) as base_url:
        result = await validate(tmp_path, base_url, monkeypatch)
    assert result.code == 0, result.stderr
    assert "serves none of Mira's account routes" in result.stdout
    assert "/api/v1/billing/balance is not served (HTTP 404)" in result.stdout
    assert "prices: list" in result.stdout


async def test_validate_online_without_a_key_reads_the_prices_and_notes_the_rest(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", varied_jobs(5))
    result = await asyncio.to_thread(
        call_main,
        "validate",
        "jobs.jsonl",
        "--online",
        cwd=tmp_path,
        env=cli_env(key=None, base_url=sim.base_url),
        monkeypatch=monkeypatch,
    )
    assert result.code == 0, result.stderr
    assert "prices: charged (mira 0.10 / 0.30" in result.stdout
    assert "/api/v1/auth/me not read: no key" in result.stdout
