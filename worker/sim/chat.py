"""`POST /v1/chat/completions` in the simulator: the checks in the backend's
order (key, quotas, the in-flight cap, the GPU queue), then the answer, plain
or streamed, or the fault the draw injects."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, Protocol

import orjson
from aiohttp import web

from worker.sim.answers import (
    BAD_ANSWERS,
    CUT,
    Choice,
    break_connection,
    completion,
    detail_response,
    echo,
    fault_response,
    peek,
    read_body,
    timed_out,
)
from worker.sim.faults import Faults, SimStats, charge_kopecks, latency_s, pick_fault
from worker.sim.forms import conversation_key, pick_form, requested_schema, shaped
from worker.sim.ledger import Ledger
from worker.sim.limits import (
    GPU_QUEUE_RETRY_AFTER_S,
    REVOKED,
    UNPAID,
    AccountLimits,
    GpuQueue,
    Refusal,
    echoing,
)
from worker.sim.stream import stream_answer, stream_queue_full

MAX_BODY_BYTES = 2 * 1024 * 1024
_RAW_BODY = web.RequestKey("sim_raw_body", bytes)
_ANSWERED = web.RequestKey("sim_answered", bool)  # a real completion, not a fault


class Server(Protocol):
    """The simulator's state, as the completion route reads and changes it."""

    keys: set[str]
    faults: Faults
    limits: AccountLimits
    gpu: GpuQueue
    ledger: Ledger

    @property
    def stats(self) -> SimStats: ...

    def today(self) -> date: ...


class Chat:
    """The completion route over the simulator's state."""

    def __init__(
        self,
        sim: Server,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._sim = sim
        self._clock = clock
        self._sleep = sleep

    def _refuse(self, refusal: Refusal, now: float) -> web.Response:
        """The refusal as a response; a 429 opens a pause nobody should send in."""
        retry_after = refusal.retry_after_s
        if retry_after is None:
            return detail_response(refusal.status, refusal.detail)
        if retry_after > 0:
            self._sim.ledger.paused(now, retry_after)
        return detail_response(
            refusal.status, refusal.detail, {"Retry-After": f"{retry_after:g}"}
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`POST /v1/chat/completions`."""
        now = self._clock()
        self._sim.ledger.arrived(now)
        try:
            response = await self._answer(request, now)
        finally:
            self._sim.ledger.left()
        if response is None or response is CUT:
            mid_body = response is CUT
            self._sim.stats.truncated += mid_body
            self._sim.stats.dropped += not mid_body
            return await break_connection(request, mid_body=mid_body)
        source_408 = response.status == 408 and self._sim.faults.behaviour == "source"
        if not response.prepared and not source_408:
            # Mira's 408 comes from its timeout layer, with no request id.
            response.headers.setdefault("x-request-id", str(uuid.uuid4()))
        self._sim.stats.by_status[response.status] += 1
        if request.get(_ANSWERED):
            transport = request.transport
            gone = transport is None or transport.is_closing()
            self._sim.ledger.delivered(request[_RAW_BODY], client_gone=gone)
        return response

    async def _answer(
        self, request: web.Request, now: float
    ) -> web.StreamResponse | None:
        sim, faults = self._sim, self._sim.faults
        refused = self._admit(request, faults, now)
        if refused is not None:
            return refused
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return detail_response(413, "Request body too large (limit 2 MB)")
        sim.ledger.seen[raw] += 1
        request[_RAW_BODY] = raw
        draw = (
            faults.seed,
            hashlib.blake2b(raw, digest_size=16).digest(),
            sim.ledger.seen[raw],
        )
        if (busy := sim.limits.enter(faults, now)) is not None:
            return self._refuse(busy, now)
        (stream, scripted_s), answered = peek(raw), False
        try:
            if not await sim.gpu.acquire(faults):
                sim.limits.limited["gpu_queue"] += 1
                if stream and faults.behaviour == "source":
                    return await stream_queue_full(request)
                return self._refuse(Refusal.rate_limited(GPU_QUEUE_RETRY_AFTER_S), now)
            try:
                response = await self._reply(
                    request, raw, draw, faults, stream, scripted_s
                )
            finally:
                await sim.gpu.release(faults)
            # Only a returned answer gives the slot back (the source: a
            # disconnect, a 408 or a refusal above leaks it).
            answered = (
                response is not None and response is not CUT and response.status != 408
            )
            return response
        finally:
            sim.limits.leave(faults, answered=answered)

    def _admit(
        self, request: web.Request, faults: Faults, now: float
    ) -> web.Response | None:
        """The key and the account's quotas, in the backend's order."""
        sim, stats = self._sim, self._sim.stats
        header = request.headers.get("Authorization", "")
        key, unauthorised = sim.limits.authenticate(header, sim.keys, stats)
        if key is None:
            return self._refuse(unauthorised or REVOKED, 0.0)
        refusal = sim.limits.admit(key, faults, now, sim.today())
        if refusal is REVOKED:
            stats.revoked_at = stats.revoked_at or now
        elif refusal is UNPAID:
            stats.payment_stopped_at = stats.payment_stopped_at or now
        if refusal is not None:
            return self._refuse(echoing(refusal, key, faults.echo_key), now)
        return None

    async def _reply(
        self,
        request: web.Request,
        raw: bytes,
        draw: tuple[object, ...],
        faults: Faults,
        stream: bool,
        scripted_s: float | None,
    ) -> web.StreamResponse | None:
        delay_s = (
            latency_s(faults, draw, len(raw)) if scripted_s is None else scripted_s
        )
        timeout_s = faults.server_timeout_s
        if timeout_s and delay_s > timeout_s and not stream:  # streams are not cut
            await self._sleep(timeout_s)
            return timed_out(faults)
        if delay_s > 0 and not stream:
            await self._sleep(delay_s)
        outcome = pick_fault(faults, draw)
        if outcome == "429":
            self._sim.limits.limited["injected"] += 1
            return self._refuse(Refusal.rate_limited(faults.retry_after), self._clock())
        if outcome is not None and outcome not in BAD_ANSWERS:
            self._sim.stats.malformed += outcome == "malformed"
            return fault_response(outcome)
        body = read_body(raw, request, faults.plan)
        if isinstance(body, web.Response):
            return body
        if outcome is None:
            answer = completion(body, faults, choices=self._in_kind(body, draw))
        else:
            answer = completion(body, faults, BAD_ANSWERS[outcome])
        self._count_answer(body, answer, outcome, faults)
        request[_ANSWERED] = outcome is None
        if stream:
            self._sim.stats.account["streams"] += 1
            return await stream_answer(
                request, answer, delay_s=delay_s, sleep=self._sleep
            )
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _in_kind(self, body: dict[str, Any], draw: tuple[object, ...]) -> list[Choice]:
        """The answer's choices in the form the schema, the script or the
        draw gives (forms.py); the conversations it goes on counted."""
        ledger, stats = self._sim.ledger, self._sim.stats
        schema = requested_schema(body)
        turn = ledger.conversations[conversation_key(body)]
        ledger.conversations[conversation_key(body)] += 1
        # A re-ask carries one more of the model's answers than the request
        # before it (a widened max_tokens carries as many).
        said = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        if said > ledger.answers_in[conversation_key(body)]:
            ledger.answers_in[conversation_key(body)] = said
            stats.reasks += 1
        script = body.get("x_sim_forms")
        scripted = (
            script[min(turn, len(script) - 1)]
            if isinstance(script, list) and script
            else None
        )
        count = body.get("n")
        count = count if isinstance(count, int) and 1 <= count <= 8 else 1
        choices = []
        for index in range(count):
            form = pick_form(
                self._sim.faults,
                (*draw, index),
                schema=schema is not None,
                scripted=scripted if isinstance(scripted, str) else None,
            )
            stats.forms[form] += 1
            choices.append(shaped(schema, form, echo(body)))
        return choices

    def _count_answer(
        self,
        body: dict[str, Any],
        answer: dict[str, Any],
        outcome: str | None,
        faults: Faults,
    ) -> None:
        usage = answer["usage"]
        self._sim.limits.tokens_used += usage["total_tokens"]
        if faults.plan != "free":  # as the backend bills: paid plans only
            self._sim.stats.account["charged_kopecks"] += charge_kopecks(
                answer["model"], usage["prompt_tokens"], usage["completion_tokens"]
            )
        if outcome is not None:
            self._sim.stats.account["bad_answers"] += 1
        if faults.behaviour == "source":
            dropped = sum(1 for m in body["messages"] if m.get("role") == "system")
            self._sim.stats.account["system_messages_dropped"] += dropped
