"""The simulator's limit stack, checked in the order Mira's backend checks it.

Per key: revocation (401), payment (402). Per user: the monthly token budget
(429, Retry-After 86400), a sliding window of N requests per W seconds (429,
the whole seconds until the oldest leaves), the daily cap (3600; the day turns
at 00:00 UTC on the simulator's wall clock, as `completions.rs` compares UTC
dates), requests in flight (5); then the server's GPU queue (10). Each check
answers None (go on) or the refusal Mira would send; every 429 reads the same,
so a client can tell them apart only by the Retry-After (MIRA_API.md).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import Counter, deque
from dataclasses import dataclass, replace
from datetime import date

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
        self._first_request: dict[str, int] = {}  # each key's first, account-wide
        self._day: date | None = None
        self._window: deque[float] = deque()
        self._in_flight = 0
        self._slots = Slots()
        self.tokens_used = 0
        self.revoked: set[str] = set()
        self.unpaid: set[str] = set()
        self.limited: Counter[str] = Counter()  # 429s by kind
        self.account: Counter[str] = Counter()  # daily messages, leaked slots

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

    def daily_used(self, faults: Faults, today: date) -> int:
        """The day's messages used: the people's (--daily-used) on the first
        day, none on a new one."""
        if self._day != today:
            first = self._day is None
            self.account["daily_messages"] = faults.daily_used if first else 0
            self._day = today
        return self.account["daily_messages"]

    def admit(
        self, key: str, faults: Faults, now: float, today: date
    ) -> Refusal | None:
        """Count one request; refuse it past a revocation, payment, or a quota.

        A revocation at the account's Nth request revokes every key in use by
        then; a key first used later is a rotated one, and stays good.
        """
        self._requests += 1
        self._requests_by_key[key] += 1
        count = self._requests_by_key[key]
        first = self._first_request.setdefault(key, self._requests)
        revoke_at = faults.revoke_after
        if revoke_at and self._requests > revoke_at and first <= revoke_at:
            self.revoked.add(key)
            return REVOKED
        if faults.payment_after and count > faults.payment_after:
            self.unpaid.add(key)
            return UNPAID
        if faults.monthly_tokens and self.tokens_used >= faults.monthly_tokens:
            return self._limited("monthly_tokens", MONTHLY_RETRY_AFTER_S)
        if faults.window_requests and (refusal := self._window_check(faults, now)):
            return refusal
        # At the cap, refused uncounted; below it, counted before the in-flight
        # check, so an in-flight refusal uses a message too (completions.rs).
        used = self.daily_used(faults, today)
        if faults.daily_cap and used >= faults.daily_cap:
            return self._limited("daily_cap", DAILY_CAP_RETRY_AFTER_S)
        self.account["daily_messages"] = used + 1
        return None

    def _window_check(self, faults: Faults, now: float) -> Refusal | None:
        window = self._window
        while window and window[0] <= now - faults.window_s:
            window.popleft()
        source = faults.behaviour == "source"
        if len(window) >= faults.window_requests:
            if source:
                # Added before it is counted: a refusal stays in the window, and
                # says the whole window (rate_limit.rs).
                window.append(now)
                return self._limited("window", max(1, math.ceil(faults.window_s)))
            wait_s = max(1, math.ceil(window[0] + faults.window_s - now))
            return self._limited("window", wait_s)
        window.append(now)  # counted from here on, refused later or not
        return None

    def enter(self, faults: Faults, now: float) -> Refusal | None:
        """Take an in-flight slot, or refuse above the limit (no slot taken).

        The caller must `leave` after every `enter` that returned None.
        """
        leaked = self._slots.held(faults, now)
        if faults.max_in_flight and self._in_flight + leaked >= faults.max_in_flight:
            return self._limited("in_flight", faults.in_flight_retry_after)
        self._in_flight += 1
        self._slots.acquired(faults, now)
        return None

    def leave(self, faults: Faults, *, answered: bool) -> None:
        """A request that took a slot is over; with the source's behaviour, a
        slot is given back only when an answer was returned (else it leaks)."""
        self._in_flight -= 1
        if not answered and faults.behaviour == "source":
            self._slots.leak()
            self.account["leaked_slots"] += 1

    def _limited(self, kind: str, retry_after_s: float) -> Refusal:
        self.limited[kind] += 1
        return Refusal.rate_limited(retry_after_s)


class Slots:
    """In-flight slots held by no request: leaked ones, and those an earlier
    process held when it was stopped hard. Like the backend's Redis counter,
    they are forgotten `slot_ttl_s` after the last successful acquire."""

    def __init__(self) -> None:
        self._leaked = 0
        self._expires_at: float | None = None

    def held(self, faults: Faults, now: float) -> int:
        """Slots held by no request now."""
        if self._expires_at is None:  # the first request: an earlier run's
            self._leaked = faults.leaked_slots if faults.behaviour == "source" else 0
            self._expires_at = now + faults.slot_ttl_s
        if now >= self._expires_at:
            self._leaked = 0
        return self._leaked

    def acquired(self, faults: Faults, now: float) -> None:
        """A slot was taken: the counter's expiry is renewed."""
        self._expires_at = now + faults.slot_ttl_s

    def leak(self) -> None:
        """A request ended without giving its slot back."""
        self._leaked += 1


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
