"""The simulator's routes beside completions: the account routes Mira's backend
serves (MIRA_API.md, "Account routes"; each takes the bearer key but pricing),
and its own admin routes (no key; the server binds loopback by default):
`GET /_sim/stats`, `POST /_sim/faults` (change faults mid-run), `POST /_sim/reset`."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import date
from typing import Any, Protocol

from aiohttp import web

from worker.sim.answers import detail_response
from worker.sim.faults import SEEDED_PRICES_KOPECKS, Faults, SimStats
from worker.sim.limits import AccountLimits

MIN_PLAN = {"mira": "free", "mira-pro": "pro", "mira-max": "max"}


class Simulator(Protocol):
    """What these routes read and change of the simulator."""

    keys: set[str]
    faults: Faults
    limits: AccountLimits

    @property
    def stats(self) -> SimStats: ...

    def reset(self) -> None: ...

    def today(self) -> date: ...


def add_routes(app: web.Application, sim: Simulator) -> None:
    """Add the account and admin routes for `sim` to `app`."""
    account = AccountRoutes(sim)
    for path, build in (
        ("/api/v1/auth/me/usage", account.usage),
        ("/api/v1/auth/me", account.me),
        ("/api/v1/billing/balance", account.balance),
        ("/v1/quota", account.buckets),
    ):
        app.router.add_get(path, account.keyed(build))
    app.router.add_get("/api/v1/billing/pricing", account.pricing)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response({**sim.stats.to_dict(), "faults": asdict(sim.faults)})

    async def set_faults(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            sim.faults = sim.faults.updated(changes)
        except ValueError as exc:
            return detail_response(400, str(exc))
        return web.json_response(asdict(sim.faults))

    async def reset(request: web.Request) -> web.Response:
        sim.reset()
        return web.json_response({"ok": True})

    app.router.add_get("/_sim/stats", get_stats)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_post("/_sim/reset", reset)


class AccountRoutes:
    """The account routes, over what the simulator counted."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def keyed(self, build: Any) -> Any:
        """A handler answering `build()`, for the simulator's keys only."""

        async def handler(request: web.Request) -> web.Response:
            await self._delay()
            header = request.headers.get("Authorization", "")
            key = header[7:].strip()
            sim = self._sim
            if (
                not header.startswith("Bearer ")
                or key not in sim.keys
                or key in sim.limits.revoked
            ):
                return detail_response(401, "Invalid API key")
            return web.json_response(build())

        return handler

    async def _delay(self) -> None:
        """--account-delay-s: a server whose account routes answer late, or
        (with a delay longer than any timeout) never."""
        if (delay_s := self._sim.faults.account_delay_s) > 0:
            await asyncio.sleep(delay_s)

    def _used(self) -> int:
        sim = self._sim
        return sim.limits.daily_used(sim.faults, sim.today())

    def _balance(self) -> int:
        """The configured balance less what answers were charged."""
        charged = self._sim.stats.account["charged_kopecks"]
        return self._sim.faults.balance_kopecks - charged

    def usage(self) -> dict[str, Any]:
        """`/api/v1/auth/me/usage`: today, the month, and the day's quota."""
        sim = self._sim
        answered = sim.stats.by_status.get(200, 0)
        today = {
            "total_requests": sim.stats.requests,
            "total_tokens": sim.limits.tokens_used,
            "total_cost_microcents": 0,
            "completed": answered,
            "cancelled": 0,
            "errors": sim.stats.requests - answered,
        }
        cap = sim.faults.daily_cap or -1  # -1: no cap, as Mira says it
        quota = {
            "daily_limit": cap,
            "remaining_today": -1 if cap < 0 else max(0, cap - self._used()),
            "plan": sim.faults.plan,
        }
        return {
            "today": today,
            "month": {**today, "daily_breakdown": []},
            "quota": quota,
        }

    def me(self) -> dict[str, Any]:
        """`/api/v1/auth/me`: the plan, the balance, today's messages."""
        return {
            "plan": self._sim.faults.plan,
            "balance_kopecks": self._balance(),
            "daily_messages_used": self._used(),
            "allow_overage_billing": False,
        }

    def balance(self) -> dict[str, Any]:
        """`/api/v1/billing/balance`."""
        kopecks = self._balance()
        charged = self._sim.stats.account["charged_kopecks"]
        spending = dict.fromkeys(
            ("today_kopecks", "week_kopecks", "month_kopecks"), charged
        )
        return {
            "balance_kopecks": kopecks,
            "balance_rubles": kopecks / 100,
            "spending": {**spending, "by_model": {}},
        }

    def buckets(self) -> dict[str, Any]:
        """`/v1/quota`: buckets the completions route does not enforce."""
        return {
            "five_hour": {"used": self._used()},
            "seven_day": {"used": self._used()},
        }

    async def pricing(self, request: web.Request) -> web.Response:
        """`/api/v1/billing/pricing` (no key): the prices charged."""
        await self._delay()
        return web.json_response(pricing_table())


def pricing_table() -> dict[str, Any]:
    """What the pricing route answers: the backend's seeded table."""
    models = [
        {
            "model": model,
            "input_price_per_1k_rubles": p_in / 100,
            "output_price_per_1k_rubles": p_out / 100,
            "thinking_surcharge_percent": 0,
            "min_plan": MIN_PLAN[model],
        }
        for model, (p_in, p_out) in SEEDED_PRICES_KOPECKS.items()
    ]
    return {"models": models}
