"""A Mira-compatible server with seeded faults, for the demo, tests and rehearsals.

It speaks what MIRA_API.md describes: bearer keys in the real format, `{"detail": ...}`
error bodies, an `x-request-id` on every response, OpenAI-shaped bodies with usage.
Every fault is decided from a hash of (seed, request body, how many times that body
was seen), so a job's fate does not depend on the order requests arrive in.
Admin endpoints (no key; the server binds loopback by default): `GET /_sim/stats`,
`POST /_sim/faults` (change faults mid-run), `POST /_sim/reset`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections import Counter
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from worker.config import KEY_PATTERN
from worker.faults import MODELS, PLAN_MODELS, Faults, SimStats, unit

SHUTDOWN_TIMEOUT_S = 1.0
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_MESSAGES = 200
MAX_CONTENT_CHARS = 32_000
# Arrivals this soon after a 429 was sent may have left the client before it saw it.
RETRY_AFTER_GRACE_S = 0.05
_CUT = web.Response(status=200)  # marker: cut the connection mid-body
_RAW_BODY = web.RequestKey("sim_raw_body", bytes)
_ANSWERED = web.RequestKey("sim_answered", bool)  # a real completion, not a fault


def make_key() -> str:
    """A fresh key in Mira's format."""
    return "sk-mira-" + secrets.token_hex(20)


def _detail(
    status: int, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


class Simulator:
    """The server's state and handlers; `start`/`stop` serve it on a loopback port."""

    def __init__(
        self, keys: list[str] | None = None, faults: Faults | None = None
    ) -> None:
        self.keys = set(keys) if keys else {make_key()}
        self.faults = faults or Faults()
        self.stats = SimStats()
        self._seen: Counter[bytes] = Counter()
        self._succeeded: set[bytes] = set()
        self._per_key: Counter[str] = Counter()
        self._in_flight_by_key: Counter[str] = Counter()
        self._revoked: set[str] = set()
        self._unpaid: set[str] = set()
        self._pause_windows: list[tuple[float, float]] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"

    @property
    def base_url(self) -> str:
        """The `/v1` base URL a client should use."""
        return f"http://{self.host}:{self.port}/v1"

    def times_seen(self) -> dict[bytes, int]:
        """How many requests arrived for each distinct body (authenticated ones)."""
        return dict(self._seen)

    def reset(self) -> None:
        """Forget counters and per-key state; keep keys and faults."""
        self.stats = SimStats()
        self._seen.clear()
        self._succeeded.clear()
        self._per_key.clear()
        self._revoked.clear()
        self._unpaid.clear()
        self._pause_windows.clear()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=MAX_BODY_BYTES * 2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_sim/stats", self._get_stats)
        app.router.add_post("/_sim/faults", self._set_faults)
        app.router.add_post("/_sim/reset", self._reset)
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
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.host, self.port = host, sockets[0].getsockname()[1]
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

    # -- admin ----------------------------------------------------------------

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {**self.stats.to_dict(), "faults": asdict(self.faults)}
        )

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            self.faults = self.faults.updated(changes)
        except ValueError as exc:
            return _detail(400, str(exc))
        return web.json_response(asdict(self.faults))

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    # -- API ------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.Response:
        # Counted like any request: a wrong base URL is a scenario tests check.
        self.stats.requests += 1
        self.stats.by_status[404] += 1
        return _detail(404, "Not Found", {"x-request-id": str(uuid.uuid4())})

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "mira",
            }
            for name in MODELS
        ]
        return web.json_response(
            {"object": "list", "data": data},
            headers={"x-request-id": str(uuid.uuid4())},
        )

    def _authenticate(
        self, request: web.Request
    ) -> tuple[str | None, web.Response | None]:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return None, _detail(401, "API key required")
        key = header[7:].strip()
        if not KEY_PATTERN.fullmatch(key) or key not in self.keys:
            return None, _detail(401, "Invalid API key")
        if key in self._revoked:
            self.stats.after_revocation += 1
            return None, _detail(401, "Invalid API key")
        if key in self._unpaid:
            self.stats.after_payment_stop += 1
            return None, _detail(402, "Insufficient balance: top up in the dashboard")
        return key, None

    def _note_arrival(self, now: float) -> None:
        if any(start <= now < end for start, end in self._pause_windows):
            self.stats.during_retry_after += 1

    def _rate_limited(
        self, retry_after: float, detail: str, now: float
    ) -> web.Response:
        if retry_after > 0:
            self._pause_windows.append((now + RETRY_AFTER_GRACE_S, now + retry_after))
            del self._pause_windows[:-64]
        value = f"{retry_after:g}"
        return _detail(429, detail, {"Retry-After": value})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        self.stats.requests += 1
        self.stats.first_arrival_at = self.stats.first_arrival_at or now
        self.stats.last_arrival_at = now
        self._note_arrival(now)
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        try:
            response = await self._answer(request, now)
        finally:
            self.stats.in_flight -= 1
        if response is None or response is _CUT:
            return await self._break_connection(request, mid_body=response is _CUT)
        response.headers.setdefault("x-request-id", str(uuid.uuid4()))
        self.stats.by_status[response.status] += 1
        if request.get(_ANSWERED):
            self._note_success(request)
        return response

    def _note_success(self, request: web.Request) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            # The client gave up on this request (it was cancelled): it never
            # got the answer, so sending it again is not a duplicate.
            self.stats.undelivered += 1
            return
        raw = request[_RAW_BODY]
        if raw in self._succeeded:
            self.stats.duplicate_successes += 1
        self._succeeded.add(raw)

    async def _break_connection(
        self, request: web.Request, *, mid_body: bool
    ) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        if not mid_body:
            self.stats.dropped += 1
            transport.abort()
            return web.Response(status=500)  # never reaches the client
        self.stats.truncated += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 400
        await response.prepare(request)
        await response.write(b'{"id": "chatcmpl-cut", "object": "chat.com')
        await asyncio.sleep(0)
        transport.abort()
        return response

    async def _answer(
        self, request: web.Request, now: float
    ) -> web.StreamResponse | None:
        key, refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        assert key is not None
        faults = self.faults
        self._per_key[key] += 1
        count = self._per_key[key]
        if faults.revoke_after and count > faults.revoke_after:
            self._revoked.add(key)
            self.stats.revoked_at = self.stats.revoked_at or now
            return _detail(401, "Invalid API key")
        if faults.payment_after and count > faults.payment_after:
            self._unpaid.add(key)
            self.stats.payment_stopped_at = self.stats.payment_stopped_at or now
            return _detail(402, "Insufficient balance: top up in the dashboard")
        if faults.daily_cap and count > faults.daily_cap:
            return self._rate_limited(3600, "Daily message limit reached", now)
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return _detail(413, "Request body too large (limit 2 MB)")
        self._seen[raw] += 1
        request[_RAW_BODY] = raw
        draw = (
            faults.seed,
            hashlib.blake2b(raw, digest_size=16).digest(),
            self._seen[raw],
        )
        self._in_flight_by_key[key] += 1
        try:
            if (
                faults.max_in_flight
                and self._in_flight_by_key[key] > faults.max_in_flight
            ):
                return self._rate_limited(
                    faults.in_flight_retry_after, "Too many concurrent requests", now
                )
            return await self._reply(request, raw, draw, faults, now)
        finally:
            self._in_flight_by_key[key] -= 1

    async def _reply(
        self,
        request: web.Request,
        raw: bytes,
        draw: tuple[object, ...],
        faults: Faults,
        now: float,
    ) -> web.StreamResponse | None:
        delay_ms = faults.latency_ms + faults.latency_jitter_ms * unit(*draw, "latency")
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        roll = unit(*draw, "fault")
        for chance, outcome in (
            (faults.p429, "429"),
            (faults.p_quota, "quota"),
            (faults.p500, "500"),
            (faults.p502, "502"),
            (faults.p503, "503"),
            (faults.p_drop, "drop"),
            (faults.p_truncate, "truncate"),
            (faults.p_malformed, "malformed"),
        ):
            if roll < chance:
                return self._fault(outcome, faults, now)
            roll -= chance
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _detail(400, "Malformed JSON body")
        if not isinstance(body, dict):
            return _detail(400, "Request body must be a JSON object")
        scripted = body.get("x_sim_status")
        if isinstance(scripted, int) and scripted >= 400:
            detail = f"scripted failure {scripted}"
            if body.get("x_sim_echo_auth"):
                # A careless server that quotes the credential back: clients
                # must not copy it into their files or logs.
                detail += f" for {request.headers.get('Authorization', '')}"
            return _detail(scripted, detail)
        refusal = self._check_request(body, faults)
        if refusal is not None:
            return refusal
        answer = self._completion(body)
        request[_ANSWERED] = True
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _fault(self, outcome: str, faults: Faults, now: float) -> web.Response | None:
        if outcome == "429":
            return self._rate_limited(faults.retry_after, "Rate limit exceeded", now)
        if outcome == "quota":
            body = {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            }
            return web.json_response(body, status=429)
        if outcome == "500":
            return _detail(500, "Internal server error")
        if outcome == "502":
            return web.Response(
                status=502,
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            )
        if outcome == "503":
            return _detail(503, "Service temporarily unavailable")
        if outcome == "malformed":
            self.stats.malformed += 1
            return web.Response(
                body=b'{"id": "chatcmpl-bad", "choices": [{"mess',
                content_type="application/json",
            )
        return _CUT if outcome == "truncate" else None

    def _check_request(
        self, body: dict[str, Any], faults: Faults
    ) -> web.Response | None:
        model = body.get("model", "mira")
        if model not in MODELS:
            return _detail(400, f"Unknown model: {model}")
        if model not in PLAN_MODELS[faults.plan]:
            return _detail(403, f"Your plan does not include {model}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _detail(422, "messages: field required")
        if len(messages) > MAX_MESSAGES:
            return _detail(422, f"Too many messages (max {MAX_MESSAGES})")
        for message in messages:
            if not isinstance(message, dict) or not isinstance(
                message.get("content"), str
            ):
                return _detail(422, "Each message needs a role and string content")
            if len(message["content"]) > MAX_CONTENT_CHARS:
                return _detail(
                    422, f"Message content over {MAX_CONTENT_CHARS} characters"
                )
        temperature = body.get("temperature")
        if temperature is not None and not (
            isinstance(temperature, (int, float)) and 0 <= temperature <= 2
        ):
            return _detail(400, "temperature must be between 0 and 2")
        return None

    @staticmethod
    def _completion(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        last = next(
            (m["content"] for m in reversed(messages) if m.get("role") == "user"),
            messages[-1]["content"],
        )
        content = f"Echo: {last[:400]}"
        prompt_tokens = (
            sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages) + 3
        )
        completion_tokens = max(1, len(content) // 4)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "mira"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
