"""The simulator's limit stack, checked in the order Mira's backend checks it.

Per key: revocation (401), payment (402). Per user: the monthly token budget
(429, Retry-After 86400), a sliding window of N requests per W seconds (429,
the whole seconds until the oldest leaves), the daily cap (3600), requests in
flight (5); then the server's GPU queue (10). Each check answers None (go on)
or the refusal Mira would send; every 429 reads the same, so a client can tell
them apart only by the Retry-After (MIRA_API.md).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import Counter, deque
from dataclasses import dataclass, replace

from worker.config import KEY_PATTERN
from worker.sim.faults import Faults, SimStats

# Mira's backend: every 429 says Retry-After in whole seconds.
MONTHLY_RETRY_AFTER_S = 86400
DAILY_CAP_RETRY_AFTER_S = 3600
GPU_QUEUE_RETRY_AFTER_S = 10


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer that is not a completion: status, detail and Retry-After."""

    status: int
    detail: str
    retry_after_s: float | None = None

    @classmethod
    def rate_limited(cls, retry_after_s: float) -> Refusal:
        """A 429 worded as Mira's backend words every one of them."""
        return cls(
            429,
            f"Rate limit exceeded, retry after {retry_after_s:g} seconds",
            retry_after_s,
        )


def make_key() -> str:
    """A fresh key in Mira's format."""
    return "sk-mira-" + secrets.token_hex(20)


NO_KEY = Refusal(401, "API key required")
REVOKED = Refusal(401, "Invalid API key")
UNPAID = Refusal(402, "Insufficient balance: top up in the dashboard")


class AccountLimits:
    """What the account used, and the refusals that follow, in the backend's order.

    Revocation and payment are per key (a new key fixes them); every other limit
    is per user, and all keys here belong to one user, as all of a Mira user's
    keys do: several client processes share them.
    """

    def __init__(self) -> None:
        self._requests_by_key: Counter[str] = Counter()
        self._requests = 0
        self._window: deque[float] = deque()
        self._in_flight = 0
        self.tokens_used = 0
        self.revoked: set[str] = set()
        self.unpaid: set[str] = set()
        self.limited: Counter[str] = Counter()  # 429s by kind

    def authenticate(
        self, header: str, keys: set[str], stats: SimStats
    ) -> tuple[str | None, Refusal | None]:
        """The key an Authorization header carries, or the refusal it earns."""
        if not header.startswith("Bearer ") or not header[7:].strip():
            return None, NO_KEY
        key = header[7:].strip()
        if not KEY_PATTERN.fullmatch(key) or key not in keys:
            return None, REVOKED
        if key in self.revoked:
            stats.after_revocation += 1
            return None, REVOKED
        if key in self.unpaid:
            stats.after_payment_stop += 1
            return None, UNPAID
        return key, None

    def admit(self, key: str, faults: Faults, now: float) -> Refusal | None:
        """Count one request; refuse it past a revocation, payment, or a quota."""
        self._requests_by_key[key] += 1
        count = self._requests_by_key[key]
        if faults.revoke_after and count > faults.revoke_after:
            self.revoked.add(key)
            return REVOKED
        if faults.payment_after and count > faults.payment_after:
            self.unpaid.add(key)
            return UNPAID
        if faults.monthly_tokens and self.tokens_used >= faults.monthly_tokens:
            return self._limited("monthly_tokens", MONTHLY_RETRY_AFTER_S)
        if faults.window_requests:
            window = self._window
            while window and window[0] <= now - faults.window_s:
                window.popleft()
            if len(window) >= faults.window_requests:
                wait_s = max(1, math.ceil(window[0] + faults.window_s - now))
                return self._limited("window", wait_s)
            window.append(now)  # counted from here on, refused later or not
        self._requests += 1
        if faults.daily_cap and self._requests > faults.daily_cap:
            return self._limited("daily_cap", DAILY_CAP_RETRY_AFTER_S)
        return None

    def enter(self, faults: Faults) -> Refusal | None:
        """Start a request; refuse it above the in-flight limit.

        The caller must `leave` after every `enter`, refused or not.
        """
        self._in_flight += 1
        if faults.max_in_flight and self._in_flight > faults.max_in_flight:
            return self._limited("in_flight", faults.in_flight_retry_after)
        return None

    def leave(self) -> None:
        """A request has its answer."""
        self._in_flight -= 1

    def _limited(self, kind: str, retry_after_s: float) -> Refusal:
        self.limited[kind] += 1
        return Refusal.rate_limited(retry_after_s)


class GpuQueue:
    """The server's generation slots, shared by every user: wait, or 429 if full."""

    def __init__(self) -> None:
        self._busy = 0
        self._waiting = 0
        self._freed = asyncio.Condition()

    async def acquire(self, faults: Faults) -> bool:
        """Take a slot, waiting in the queue; False when the queue is full or the
        wait is over (Mira then answers 429 with Retry-After 10)."""
        if not faults.gpu_slots:
            return True
        if self._busy < faults.gpu_slots:
            self._busy += 1
            return True
        if self._waiting >= faults.gpu_queue:
            return False
        self._waiting += 1
        try:
            async with self._freed:
                await asyncio.wait_for(
                    self._freed.wait_for(lambda: self._busy < faults.gpu_slots),
                    faults.gpu_wait_s,
                )
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
        self._busy += 1
        return True

    async def release(self, faults: Faults) -> None:
        """Give a slot back."""
        if not faults.gpu_slots:
            return
        self._busy -= 1
        async with self._freed:
            self._freed.notify()


def echoing(refusal: Refusal, key: str, how: str) -> Refusal:
    """A careless server's refusal, quoting the credential back."""
    if not how or refusal.status not in (401, 402):
        return refusal
    quoted = f"Bearer {key}" if how == "bearer" else key.removeprefix("sk-mira-")
    return replace(refusal, detail=f"{refusal.detail} (credential {quoted})")
