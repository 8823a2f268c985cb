"""The simulator speaks the protocol clients expect; each fault does what it says."""

from __future__ import annotations

import asyncio
import io
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.helpers import OTHER_KEY, SENTINEL_KEY
from worker.sim.faults import Faults
from worker.sim.server import Simulator

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

pytestmark = pytest.mark.integration


def sdk(sim: Simulator, key: str = SENTINEL_KEY) -> openai.AsyncOpenAI:
    # Imported by the tests that use it: loading the SDK takes half a second,
    # which every xdist worker would otherwise pay as it collects.
    import openai

    return openai.AsyncOpenAI(api_key=key, base_url=sim.base_url, max_retries=0)


async def post(
    sim: Simulator, body: dict[str, Any] | bytes, key: str | None = SENTINEL_KEY
) -> tuple[int, CIMultiDict[str], bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.base_url}/chat/completions", data=data, headers=headers
        ) as r,
    ):
        return r.status, CIMultiDict(r.headers), await r.read()


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "model": "mira",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


@pytest.mark.slow
async def test_the_openai_sdk_completes_lists_models_and_names_each_refusal(
    sim: Simulator,
) -> None:
    # One test for all the SDK checks: each xdist worker that ran one of them
    # imported the SDK, a second of CPU each time.
    import openai

    ping: list[ChatCompletionMessageParam] = [{"role": "user", "content": "ping"}]
    async with sdk(sim) as client:
        reply = await client.chat.completions.create(model="mira", messages=ping)
        models = await client.models.list()
    assert reply.choices[0].message.content == "Echo: ping"
    assert reply.usage is not None
    assert reply.usage.total_tokens > 0
    assert {m.id for m in models.data} >= {"mira", "mira-pro"}

    async with sdk(sim, OTHER_KEY) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="mira", messages=ping)

    sim.faults = Faults(p429=1.0, retry_after=3)
    async with sdk(sim) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="mira", messages=ping)
    assert info.value.response.headers["retry-after"] == "3"


async def test_errors_are_mira_detail_bodies_with_request_ids(sim: Simulator) -> None:
    status, headers, body = await post(sim, chat(), key=None)
    assert status == 401
    assert json.loads(body) == {"detail": "API key required"}
    assert headers["x-request-id"]
    status, _, body = await post(sim, chat(), key=OTHER_KEY)
    assert (status, json.loads(body)) == (401, {"detail": "Invalid API key"})


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (chat(model="mira-ultra"), 400),
        (chat(temperature=3), 400),
        (b"{nope", 400),
        ({"model": "mira", "messages": [{"role": "user", "content": "x"}] * 201}, 422),
        (chat("x" * 32_001), 422),
        (chat("x" * (2 * 1024 * 1024 + 10)), 413),
        (chat(x_sim_status=409), 409),
    ],
)
async def test_validation_matches_mira(
    sim: Simulator, body: dict[str, Any] | bytes, status: int
) -> None:
    got, _, raw = await post(sim, body)
    assert got == status
    assert "detail" in json.loads(raw)


async def test_plan_gates_models_with_403(sim: Simulator) -> None:
    sim.faults = Faults(plan="free")
    assert (await post(sim, chat(model="mira-pro")))[0] == 403
    assert (await post(sim, chat(model="mira")))[0] == 200


async def test_fault_decisions_are_deterministic_for_a_seed(sim: Simulator) -> None:
    sim.faults = Faults(seed=42, p500=0.5)
    first = [(await post(sim, chat(f"q{i}")))[0] for i in range(20)]
    sim.reset()
    second = [(await post(sim, chat(f"q{i}")))[0] for i in range(20)]
    assert first == second
    assert set(first) == {200, 500}


@pytest.mark.parametrize(
    ("faults", "status", "check"),
    [
        (Faults(p500=1), 500, None),
        (Faults(p503=1), 503, None),
        (Faults(p502=1), 502, b"<html>"),
        (Faults(p_malformed=1), 200, b"chatcmpl-bad"),
        (Faults(p_quota=1), 429, b"insufficient_quota"),
    ],
)
async def test_injected_status_faults(
    sim: Simulator, faults: Faults, status: int, check: bytes | None
) -> None:
    sim.faults = faults
    got, _, body = await post(sim, chat())
    assert got == status
    if check:
        assert check in body


@pytest.mark.parametrize("faults", [Faults(p_drop=1), Faults(p_truncate=1)])
async def test_dropped_and_cut_connections_fail_on_the_client(
    sim: Simulator, faults: Faults
) -> None:
    sim.faults = faults
    with pytest.raises(aiohttp.ClientError):
        await post(sim, chat())
    assert sim.stats.dropped + sim.stats.truncated == 1


async def test_revocation_and_payment_stop_after_n_requests(sim: Simulator) -> None:
    sim.faults = Faults(revoke_after=2)
    statuses = [(await post(sim, chat(f"{i}")))[0] for i in range(4)]
    assert statuses == [200, 200, 401, 401]
    assert sim.stats.after_revocation == 1
    sim.keys.add(OTHER_KEY)
    sim.faults = Faults(payment_after=1)
    statuses = [(await post(sim, chat(f"p{i}"), key=OTHER_KEY))[0] for i in range(3)]
    assert statuses == [200, 402, 402]
    assert sim.stats.after_payment_stop == 1


async def test_daily_cap_answers_429_with_an_hour_wait(sim: Simulator) -> None:
    sim.faults = Faults(daily_cap=1)
    assert (await post(sim, chat()))[0] == 200
    status, headers, _ = await post(sim, chat("again"))
    assert (status, headers["Retry-After"]) == (429, "3600")


async def test_in_flight_limit_answers_429_retry_after_5(sim: Simulator) -> None:
    sim.faults = Faults(max_in_flight=3, latency_ms=100)
    results = await asyncio.gather(*(post(sim, chat(f"c{i}")) for i in range(6)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert all(h["Retry-After"] == "5" for s, h, _ in results if s == 429)
    assert sim.stats.peak_in_flight >= 3


async def test_arrivals_during_a_retry_after_are_counted(sim: Simulator) -> None:
    sim.faults = Faults(p429=1, retry_after=30)
    await post(sim, chat())
    await asyncio.sleep(0.06)
    sim.faults = Faults()
    await post(sim, chat("during"))
    assert sim.stats.during_retry_after == 1


async def test_admin_endpoints_change_faults_and_report_stats(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as session:
        root = sim.base_url.removesuffix("/v1")
        async with session.post(
            f"{root}/_sim/faults", json={"p500": 1, "seed": 9}
        ) as r:
            assert r.status == 200
        assert sim.faults.p500 == 1
        async with session.post(f"{root}/_sim/faults", json={"nope": 1}) as r:
            assert r.status == 400
        await post(sim, chat())
        async with session.get(f"{root}/_sim/stats") as r:
            stats = await r.json()
        assert stats["by_status"] == {"500": 1}
        async with session.post(f"{root}/_sim/reset") as r:
            assert r.status == 200
    assert sim.stats.requests == 0
