"""The simulator's admin routes (no key; the server binds loopback by default):
`GET /_sim/stats`, `POST /_sim/faults` (change faults mid-run), `POST /_sim/reset`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Protocol

from aiohttp import web

from worker.sim.answers import detail_response
from worker.sim.faults import Faults, SimStats


class Simulator(Protocol):
    """What the admin routes read and change."""

    faults: Faults

    @property
    def stats(self) -> SimStats: ...

    def reset(self) -> None: ...


def add_admin_routes(app: web.Application, sim: Simulator) -> None:
    """Add the admin routes for `sim` to `app`."""

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
