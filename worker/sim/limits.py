"""The simulator's per-key limits: revocation, payment, daily cap, requests in flight.

Each check answers None (go on) or the refusal Mira would send. Retry-After values
and the 429 body follow Mira's backend: every 429 reads the same, so a client can
tell the limits apart only by the Retry-After (MIRA_API.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from worker.sim.faults import Faults

DAILY_CAP_RETRY_AFTER_S = 3600


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


REVOKED = Refusal(401, "Invalid API key")
UNPAID = Refusal(402, "Insufficient balance: top up in the dashboard")


class KeyLimits:
    """What each key has used, and the refusals that follow from it."""

    def __init__(self) -> None:
        self._requests: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self.revoked: set[str] = set()
        self.unpaid: set[str] = set()

    def reset(self) -> None:
        """Forget what every key used."""
        self._requests.clear()
        self.revoked.clear()
        self.unpaid.clear()

    def admit(self, key: str, faults: Faults) -> Refusal | None:
        """Count one request of `key`; refuse it past a revocation, payment or cap."""
        self._requests[key] += 1
        count = self._requests[key]
        if faults.revoke_after and count > faults.revoke_after:
            self.revoked.add(key)
            return REVOKED
        if faults.payment_after and count > faults.payment_after:
            self.unpaid.add(key)
            return UNPAID
        if faults.daily_cap and count > faults.daily_cap:
            return Refusal.rate_limited(DAILY_CAP_RETRY_AFTER_S)
        return None

    def enter(self, key: str, faults: Faults) -> Refusal | None:
        """Start a request of `key`; refuse it above the in-flight limit.

        The caller must `leave` after every `enter`, refused or not.
        """
        self._in_flight[key] += 1
        if faults.max_in_flight and self._in_flight[key] > faults.max_in_flight:
            return Refusal.rate_limited(faults.in_flight_retry_after)
        return None

    def leave(self, key: str) -> None:
        """A request of `key` has its answer."""
        self._in_flight[key] -= 1


def echoing(refusal: Refusal, key: str, how: str) -> Refusal:
    """A careless server's refusal, quoting the credential back."""
    if not how or refusal.status not in (401, 402):
        return refusal
    quoted = f"Bearer {key}" if how == "bearer" else key.removeprefix("sk-mira-")
    return replace(refusal, detail=f"{refusal.detail} (credential {quoted})")
