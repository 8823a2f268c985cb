"""A Mira-compatible server with seeded faults, for the demo, tests and rehearsals.

It speaks what MIRA_API.md describes: bearer keys in the real format, `{"detail": ...}`
error bodies, an `x-request-id` on every response, OpenAI-shaped bodies with usage.
Every fault is decided from a hash of (seed, request body, how many times that body
was seen), so a job's fate does not depend on the order requests arrive in.
Its account and admin routes are in routes.py.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

from aiohttp import web

from worker.sim.answers import detail_response, models_response
from worker.sim.chat import MAX_BODY_BYTES, Chat
from worker.sim.faults import Faults, SimStats
from worker.sim.ledger import Ledger
from worker.sim.limits import AccountLimits, GpuQueue, make_key
from worker.sim.routes import add_routes

SHUTDOWN_TIMEOUT_S = 1.0


class Simulator:
    """The server's state and handlers; `start`/`stop` serve it on a loopback port."""

    def __init__(
        self,
        keys: list[str] | None = None,
        faults: Faults | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # Its time is injected, so tests run its latencies and windows on a
        # fake clock, and its day on a fake wall; a real run serves in real time.
        self._clock = clock
        self._sleep = sleep
        self.wall = wall
        self.keys = set(keys) if keys else {make_key()}
        self.faults = faults or Faults()
        self.limits = AccountLimits()
        self.gpu = GpuQueue()
        self.ledger = Ledger(self.limits.limited, self.limits.account)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self.scheme = "http"

    @property
    def base_url(self) -> str:
        """The `/v1` base URL a client should use."""
        return f"{self.scheme}://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> SimStats:
        """What the simulator counted."""
        return self.ledger.stats

    def today(self) -> date:
        """The UTC date on the simulator's wall clock: Mira's day."""
        return self.wall().date()

    def times_seen(self) -> dict[bytes, int]:
        """How many requests arrived for each distinct body (authenticated ones)."""
        return dict(self.ledger.seen)

    def reset(self) -> None:
        """Forget counters and per-key state; keep keys and faults."""
        self.limits = AccountLimits()
        self.ledger = Ledger(self.limits.limited, self.limits.account)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=MAX_BODY_BYTES * 2)
        app.router.add_post(
            "/v1/chat/completions", Chat(self, self._clock, self._sleep).handle
        )
        app.router.add_get("/v1/models", models_response)
        add_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> str:
        """Serve on host:port (0 = a free port), over TLS with `tls`; return the
        base URL."""
        # Handlers are cancelled when their client goes away, as a real server's
        # work is; shutdown does not wait out an injected latency.
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host, port, reuse_address=True, ssl_context=tls
        )
        await site.start()
        self.host, self.port = host, self._runner.addresses[0][1]
        self.scheme = "http" if tls is None else "https"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _not_found(self, request: web.Request) -> web.Response:
        # Counted like any request: a wrong base URL is a scenario tests check.
        self.stats.requests += 1
        self.stats.by_status[404] += 1
        return detail_response(404, "Not Found", {"x-request-id": str(uuid.uuid4())})
