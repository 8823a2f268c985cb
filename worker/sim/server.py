"""A Mira-compatible server with seeded faults, for the demo, tests and rehearsals.

It speaks what MIRA_API.md describes: bearer keys in the real format, `{"detail": ...}`
error bodies, an `x-request-id` on every response, OpenAI-shaped bodies with usage.
Every fault is decided from a hash of (seed, request body, how many times that body
was seen), so a job's fate does not depend on the order requests arrive in.
Its admin routes are in admin.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from worker.sim.admin import add_admin_routes
from worker.sim.answers import (
    CUT,
    break_connection,
    completion,
    detail_response,
    fault_response,
    models_response,
    read_body,
)
from worker.sim.faults import Faults, SimStats, latency_s, pick_fault
from worker.sim.ledger import Ledger
from worker.sim.limits import (
    GPU_QUEUE_RETRY_AFTER_S,
    REVOKED,
    UNPAID,
    AccountLimits,
    GpuQueue,
    Refusal,
    echoing,
    make_key,
)

SHUTDOWN_TIMEOUT_S = 1.0
MAX_BODY_BYTES = 2 * 1024 * 1024
_RAW_BODY = web.RequestKey("sim_raw_body", bytes)
_ANSWERED = web.RequestKey("sim_answered", bool)  # a real completion, not a fault


class Simulator:
    """The server's state and handlers; `start`/`stop` serve it on a loopback port."""

    def __init__(
        self,
        keys: list[str] | None = None,
        faults: Faults | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # Its time is injected, so tests run its latencies and windows on a
        # fake clock; a real run serves in real time.
        self._clock = clock
        self._sleep = sleep
        self.keys = set(keys) if keys else {make_key()}
        self.faults = faults or Faults()
        self.limits = AccountLimits()
        self.gpu = GpuQueue()
        self.ledger = Ledger(self.limits.limited)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"

    @property
    def base_url(self) -> str:
        """The `/v1` base URL a client should use."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> SimStats:
        """What the simulator counted."""
        return self.ledger.stats

    def times_seen(self) -> dict[bytes, int]:
        """How many requests arrived for each distinct body (authenticated ones)."""
        return dict(self.ledger.seen)

    def reset(self) -> None:
        """Forget counters and per-key state; keep keys and faults."""
        self.limits = AccountLimits()
        self.ledger = Ledger(self.limits.limited)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=MAX_BODY_BYTES * 2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", models_response)
        add_admin_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); return the base URL."""
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
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.host, self.port = host, self._runner.addresses[0][1]
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

    def _refuse(self, refusal: Refusal, now: float) -> web.Response:
        """The refusal as a response; a 429 opens a pause nobody should send in."""
        retry_after = refusal.retry_after_s
        if retry_after is None:
            return detail_response(refusal.status, refusal.detail)
        if retry_after > 0:
            self.ledger.paused(now, retry_after)
        return detail_response(
            refusal.status, refusal.detail, {"Retry-After": f"{retry_after:g}"}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        now = self._clock()
        self.ledger.arrived(now)
        try:
            response = await self._answer(request, now)
        finally:
            self.ledger.left()
        if response is None or response is CUT:
            mid_body = response is CUT
            self.stats.truncated += mid_body
            self.stats.dropped += not mid_body
            return await break_connection(request, mid_body=mid_body)
        response.headers.setdefault("x-request-id", str(uuid.uuid4()))
        self.stats.by_status[response.status] += 1
        if request.get(_ANSWERED):
            transport = request.transport
            gone = transport is None or transport.is_closing()
            self.ledger.delivered(request[_RAW_BODY], client_gone=gone)
        return response

    async def _answer(
        self, request: web.Request, now: float
    ) -> web.StreamResponse | None:
        header = request.headers.get("Authorization", "")
        key, unauthorised = self.limits.authenticate(header, self.keys, self.stats)
        if key is None:
            return self._refuse(unauthorised or REVOKED, 0.0)
        faults = self.faults
        refusal = self.limits.admit(key, faults, now)
        if refusal is REVOKED:
            self.stats.revoked_at = self.stats.revoked_at or now
        elif refusal is UNPAID:
            self.stats.payment_stopped_at = self.stats.payment_stopped_at or now
        if refusal is not None:
            return self._refuse(echoing(refusal, key, faults.echo_key), now)
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return detail_response(413, "Request body too large (limit 2 MB)")
        self.ledger.seen[raw] += 1
        request[_RAW_BODY] = raw
        draw = (
            faults.seed,
            hashlib.blake2b(raw, digest_size=16).digest(),
            self.ledger.seen[raw],
        )
        try:
            if (busy := self.limits.enter(faults)) is not None:
                return self._refuse(busy, now)
            if not await self.gpu.acquire(faults):
                self.limits.limited["gpu_queue"] += 1
                return self._refuse(Refusal.rate_limited(GPU_QUEUE_RETRY_AFTER_S), now)
            try:
                return await self._reply(request, raw, draw, faults, now)
            finally:
                await self.gpu.release(faults)
        finally:
            self.limits.leave()

    async def _reply(
        self,
        request: web.Request,
        raw: bytes,
        draw: tuple[object, ...],
        faults: Faults,
        now: float,
    ) -> web.StreamResponse | None:
        delay_s = latency_s(faults, draw, len(raw))
        timeout_s = faults.server_timeout_s
        if timeout_s and delay_s > timeout_s:
            await self._sleep(timeout_s)
            return detail_response(408, "Request timed out")
        if delay_s > 0:
            await self._sleep(delay_s)
        outcome = pick_fault(faults, draw)
        if outcome == "429":
            self.limits.limited["injected"] += 1
            return self._refuse(Refusal.rate_limited(faults.retry_after), now)
        if outcome is not None:
            self.stats.malformed += outcome == "malformed"
            return fault_response(outcome)
        body = read_body(raw, request, faults.plan)
        if isinstance(body, web.Response):
            return body
        answer = completion(body)
        self.limits.tokens_used += answer["usage"]["total_tokens"]
        request[_ANSWERED] = True
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
