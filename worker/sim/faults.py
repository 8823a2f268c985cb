"""What the simulator injects (Faults), what it counted (SimStats), and its models."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

MODELS = ("mira", "mira-pro", "mira-max", "mira-thinking")
# Which models each plan may use (a 403 otherwise), as Mira gates them by plan.
PLAN_MODELS = {
    "free": frozenset({"mira"}),
    "pro": frozenset({"mira", "mira-pro", "mira-thinking"}),
    "max": frozenset(MODELS),
}
# The backend's seeded pricing table, kopecks per 1,000 words (not the list price).
SEEDED_PRICES_KOPECKS = {"mira": (10, 30), "mira-pro": (30, 90), "mira-max": (150, 600)}


def charge_kopecks(model: str, prompt: int, completion: int) -> int:
    """What Mira's billing charges one answer (`calculate_charge`): each side
    floored to whole kopecks; a model without a price is not billed."""
    p_in, p_out = SEEDED_PRICES_KOPECKS.get(model, (0, 0))
    return prompt * p_in // 1000 + completion * p_out // 1000


# Mira's real limits for one user, as its backend source behaves (MIRA_API.md,
# "What the server really does"): `--profile mira`.
MIRA_PROFILE: dict[str, Any] = {
    "behaviour": "source",
    "latency_ms": 300.0,
    "latency_sigma": 0.4,
    "server_timeout_s": 30.0,
    "max_in_flight": 3,
    "in_flight_retry_after": 5.0,
    "slot_ttl_s": 300.0,
    "window_requests": 60,
    "window_s": 60.0,
}
# "docs": as MIRA_API.md's documentation describes the server; "source": as its
# backend source does (window refusals that stay in the window and answer the
# whole window, leaked in-flight slots, an empty 408, word-count usage).
BEHAVIOURS = ("docs", "source")


@dataclass(frozen=True, slots=True)
class Faults:
    """What the simulator injects; every probability is per request, 0..1."""

    seed: int = 0
    behaviour: str = "docs"
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    latency_sigma: float = 0.0
    latency_ms_per_kchar: float = 0.0
    server_timeout_s: float = 0.0
    p429: float = 0.0
    retry_after: float = 1.0
    p500: float = 0.0
    p502: float = 0.0
    p503: float = 0.0
    p_drop: float = 0.0
    p_truncate: float = 0.0
    p_malformed: float = 0.0
    p_quota: float = 0.0
    p_upstream_error: float = 0.0
    p_moderated: float = 0.0
    p_empty: float = 0.0
    p_prose: float = 0.0
    p_fenced: float = 0.0
    p_broken_json: float = 0.0
    p_missing_field: float = 0.0
    p_length: float = 0.0
    max_in_flight: int = 0
    in_flight_retry_after: float = 5.0
    slot_ttl_s: float = 300.0
    leaked_slots: int = 0
    window_requests: int = 0
    window_s: float = 60.0
    monthly_tokens: int = 0
    gpu_slots: int = 0
    gpu_queue: int = 0
    gpu_wait_s: float = 60.0
    revoke_after: int = 0
    payment_after: int = 0
    daily_cap: int = 0
    daily_used: int = 0
    account_delay_s: float = 0.0
    plan: str = "max"
    balance_kopecks: int = 100_000
    echo_key: str = ""  # "bearer" or "bare": 401/402 details quote the key

    def updated(self, changes: dict[str, Any]) -> Faults:
        """A copy with some fields changed; unknown names are refused."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            current = getattr(self, name)
            typed[name] = type(current)(value)
        if typed.get("behaviour", self.behaviour) not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {list(BEHAVIOURS)}")
        if typed.get("plan", self.plan) not in PLAN_MODELS:
            raise ValueError(f"plan must be one of {sorted(PLAN_MODELS)}")
        if typed.get("echo_key", self.echo_key) not in ("", "bearer", "bare"):
            raise ValueError("echo_key must be '', 'bearer' or 'bare'")
        return replace(self, **typed)


@dataclass(slots=True)
class SimStats:
    """What the server saw, for tests to assert on."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    dropped: int = 0
    truncated: int = 0
    malformed: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    after_revocation: int = 0
    after_payment_stop: int = 0
    during_retry_after: int = 0
    limited: Counter[str] = field(default_factory=Counter)
    # daily messages used, slots leaked, streams served, bad answers sent, system
    # messages dropped: what the backend source does that a client pays for
    account: Counter[str] = field(default_factory=Counter)
    # answers by form (valid, prose, fenced, broken, missing, length,
    # tool_calls), and requests that went on a conversation (re-asks)
    forms: Counter[str] = field(default_factory=Counter)
    reasks: int = 0
    duplicate_successes: int = 0
    undelivered: int = 0
    first_arrival_at: float | None = None
    last_arrival_at: float | None = None
    revoked_at: float | None = None
    payment_stopped_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        data = asdict(self)
        data["by_status"] = {str(k): v for k, v in sorted(self.by_status.items())}
        data["limited"] = dict(self.limited)
        data["account"] = dict(self.account)
        data["forms"] = dict(self.forms)
        return data


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick_fault(faults: Faults, draw: tuple[object, ...]) -> str | None:
    """The fault this draw injects ("429", "500", "drop", ...), or None."""
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
        (faults.p_upstream_error, "upstream_error"),
        (faults.p_moderated, "moderated"),
        (faults.p_empty, "empty"),
    ):
        if roll < chance:
            return outcome
        roll -= chance
    return None


def latency_s(faults: Faults, draw: tuple[object, ...], prompt_chars: int) -> float:
    """How long this answer takes: log-normal around the median when
    `latency_sigma` is set (else the median plus uniform jitter), longer for a
    longer prompt."""
    median_ms = faults.latency_ms + faults.latency_ms_per_kchar * prompt_chars / 1000
    if faults.latency_sigma > 0:
        gauss = statistics.NormalDist().inv_cdf(
            min(max(unit(*draw, "lat"), 1e-9), 1 - 1e-9)
        )
        return median_ms * math.exp(faults.latency_sigma * gauss) / 1000
    return (median_ms + faults.latency_jitter_ms * unit(*draw, "latency")) / 1000
