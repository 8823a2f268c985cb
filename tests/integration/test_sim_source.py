"""The simulator's `--behaviour source` against MIRA_API.md's "What the server
really does", on a fake clock: window refusals, the daily counter, leaked slots,
the empty 408, streams, and the 200s that are not answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import FakeClock
from tests.helpers import SENTINEL_KEY
from worker.sim.faults import MIRA_PROFILE, Faults
from worker.sim.server import Simulator

SOURCE = Faults(behaviour="source")


@pytest.fixture
async def timed() -> AsyncIterator[tuple[Simulator, FakeClock]]:
    clock = FakeClock()
    async with Simulator(keys=[SENTINEL_KEY], clock=clock, sleep=clock.sleep) as sim:
        yield sim, clock


async def post(
    sim: Simulator, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], bytes]:
    payload = body or {"messages": [{"role": "user", "content": "hi there"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sim.base_url}/chat/completions",
            json=payload,
            headers={"Authorization": f"Bearer {SENTINEL_KEY}"},
        ) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_a_window_refusal_stays_in_the_window_and_says_its_whole_length(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, clock = timed
    sim.faults = SOURCE.updated({"window_requests": 2, "window_s": 10})
    assert [(await post(sim))[0] for _ in range(2)] == [200, 200]
    clock.now += 9
    status, headers, _ = await post(sim)
    assert (status, headers["Retry-After"]) == (429, "10")
    clock.now += 1.5  # the first two left; the refusal at 9 s has not
    assert (await post(sim))[0] == 200
    assert (await post(sim))[0] == 429  # the refusal still fills the window
    assert sim.stats.account["daily_messages"] == 3  # window refusals are free


async def test_an_in_flight_refusal_uses_a_daily_message(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, _ = timed
    sim.faults = SOURCE.updated({"max_in_flight": 1, "leaked_slots": 1})
    status, headers, _ = await post(sim)
    assert (status, headers["Retry-After"]) == (429, "5")
    assert sim.stats.account["daily_messages"] == 1


async def test_slots_held_by_a_stopped_run_expire_after_the_last_acquire(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, clock = timed
    sim.faults = SOURCE.updated(
        {"max_in_flight": 3, "leaked_slots": 3, "slot_ttl_s": 20}
    )
    assert (await post(sim))[0] == 429
    clock.now += 19
    assert (await post(sim))[0] == 429  # refusals do not renew the counter
    clock.now += 1
    assert (await post(sim))[0] == 200


async def test_a_408_is_empty_and_leaks_its_slot_until_the_counter_expires(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, clock = timed
    sim.faults = SOURCE.updated(
        {
            "max_in_flight": 1,
            "slot_ttl_s": 20,
            "latency_ms": 2000,
            "server_timeout_s": 1,
        }
    )
    status, headers, body = await post(sim)
    assert (status, body) == (408, b"")
    assert "x-request-id" not in {k.lower() for k in headers}
    assert sim.stats.account["leaked_slots"] == 1
    assert (await post(sim))[0] == 429  # the leaked slot fills the cap of 1
    clock.now += 20
    sim.faults = sim.faults.updated({"server_timeout_s": 0})
    assert (await post(sim))[0] == 200


async def test_a_stream_is_not_cut_and_ends_with_done(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, _ = timed
    sim.faults = SOURCE.updated({"latency_ms": 5000, "server_timeout_s": 1})
    body = {"stream": True, "messages": [{"role": "user", "content": "one two"}]}
    status, headers, raw = await post(sim, body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    events = [line[6:] for line in raw.decode().splitlines() if line]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == (
        "Echo: one two"
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)


async def test_a_full_gpu_queue_answers_a_stream_with_one_event_and_no_done(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, _ = timed
    sim.faults = SOURCE.updated({"gpu_slots": 1, "gpu_queue": 0, "latency_ms": 100})
    slow = post(sim)
    body = {"stream": True, "messages": [{"role": "user", "content": "x"}]}
    first, (status, _, raw) = await asyncio.gather(slow, post(sim, body))
    assert first[0] == 200
    assert status == 200
    assert b"queue_full" in raw
    assert b"[DONE]" not in raw


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ("p_upstream_error", "Ошибка: "),
        ("p_moderated", "I cannot provide that response."),
    ],
)
async def test_a_200_can_carry_a_failure_as_its_answer(
    timed: tuple[Simulator, FakeClock], fault: str, text: str
) -> None:
    sim, _ = timed
    sim.faults = SOURCE.updated({fault: 1.0})
    status, _, raw = await post(sim)
    assert status == 200
    content = orjson.loads(raw)["choices"][0]["message"]["content"]
    assert content.startswith(text)
    assert orjson.loads(raw)["choices"][0]["finish_reason"] == "stop"
    assert sim.stats.account["bad_answers"] == 1


async def test_usage_is_words_and_system_messages_are_dropped(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, _ = timed
    sim.faults = SOURCE
    body = {
        "messages": [
            {"role": "system", "content": "be brief please"},
            {"role": "user", "content": "three little words"},
        ]
    }
    _, _, raw = await post(sim, body)
    usage = orjson.loads(raw)["usage"]
    assert usage["prompt_tokens"] == 6  # every message's words, as billed
    assert usage["completion_tokens"] == 4  # "Echo: three little words"
    assert sim.stats.account["system_messages_dropped"] == 1


def test_the_mira_profile_is_the_source() -> None:
    faults = Faults().updated(MIRA_PROFILE)
    assert faults.behaviour == "source"
    assert faults.slot_ttl_s == 300


async def get(sim: Simulator, path: str, key: str | None = SENTINEL_KEY) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    root = sim.base_url.removesuffix("/v1")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{root}{path}", headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_the_account_routes_say_plan_quota_balance_and_prices(
    timed: tuple[Simulator, FakeClock],
) -> None:
    sim, _ = timed
    sim.faults = SOURCE.updated({"daily_cap": 500, "plan": "pro"})
    await post(sim)
    status, usage = await get(sim, "/api/v1/auth/me/usage")
    assert status == 200
    assert usage["quota"] == {"daily_limit": 500, "remaining_today": 499, "plan": "pro"}
    _, me = await get(sim, "/api/v1/auth/me")
    assert (me["plan"], me["daily_messages_used"]) == ("pro", 1)
    _, balance = await get(sim, "/api/v1/billing/balance")
    assert balance["balance_rubles"] == balance["balance_kopecks"] / 100
    status, pricing = await get(sim, "/api/v1/billing/pricing", key=None)
    assert status == 200
    mira = next(m for m in pricing["models"] if m["model"] == "mira")
    assert (mira["input_price_per_1k_rubles"], mira["output_price_per_1k_rubles"]) == (
        0.1,
        0.3,
    )
    assert (await get(sim, "/api/v1/auth/me", key=None))[0] == 401
    assert (await get(sim, "/v1/quota"))[0] == 200
