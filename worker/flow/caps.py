"""Mira's documented limits, and the odds the learner weighs before it probes
past them (MIRA_API.md)."""

from __future__ import annotations

import math

MIRA_IN_FLIGHT = 3  # per user (MIRA_API.md)
IN_FLIGHT_RETRY_AFTER_S = 5.0  # Mira's Retry-After above it
GPU_QUEUE_RETRY_AFTER_S = 10.0
# Mira's fixed Retry-After at the daily message cap (not the time to midnight),
# and once the monthly token budget is spent: stops, not pauses.
DAILY_CAP_RETRY_AFTER_S = 3600.0
MONTHLY_BUDGET_RETRY_AFTER_S = 86400.0
REFUSAL_KINDS = (
    "in_flight",
    "window",
    "gpu_queue",
    "daily",
    "monthly",
    "other",
)  # and when its GPU queue is full
# Answers quicker than this come from no language model: the documented cap,
# which is Mira's, is then no evidence about the server.
MODEL_LATENCY_S = 0.05
# Odds that a probe fails: just above Mira's documented cap, above a level
# that already went through beyond it, and above a cap learned from a 429.
ODDS_AT_DOCUMENTED_CAP = 4.0
ODDS_BEYOND_IT = 0.25
ODDS_ABOVE_LEARNED_CAP = 9.0
PROBE_BACKOFF_S = 30.0  # after a failed probe; doubles with each one
SEND_LOG = 20_000
# Mira frees a leaked in-flight slot this long after the user's last acquire.
SLOT_EXPIRY_S = 300.0
# The longest pause while the cap is held elsewhere (5, 10, 20 ... 60 s).
HELD_PAUSE_MAX_S = 60.0
HELD_ELSEWHERE = (
    "Mira's in-flight slots are held by requests that are not this run's (an "
    "earlier run stopped hard, an answer cut at the server's timeout, or the web "
    "chat); Mira frees them up to 5 minutes after they were taken. Waiting with "
    "growing pauses, as each refusal uses one of the day's messages"
)  # starts remembered to learn a window from


def shard_share(index: int, count: int) -> tuple[int, float]:
    """This shard's part of the documented cap, and from what fraction of its own
    jobs a shard with a smaller part may expect the others to be done."""
    share = max(1, MIRA_IN_FLIGHT // count + (index < MIRA_IN_FLIGHT % count))
    largest = max(1, MIRA_IN_FLIGHT // count + (MIRA_IN_FLIGHT % count > 0))
    # Equal job counts: a shard with half the share is half done when the
    # others finish; a tenth more is margin for the spread between shards.
    takeover = min(1.0, share / largest + 0.1) if share < largest else math.inf
    return share, takeover


def kind_of_429(retry_after_s: float, in_flight_at_send: int, proven: int) -> str:
    """What a 429 meant: Mira's differ only in their Retry-After (MIRA_API.md).

    `proven` is the most in flight that a full round trip went through at.
    """
    if retry_after_s == IN_FLIGHT_RETRY_AFTER_S:
        return "in_flight"
    if retry_after_s == GPU_QUEUE_RETRY_AFTER_S:
        return "gpu_queue"
    if in_flight_at_send > proven:
        return "in_flight"  # more in flight than ever went through
    if retry_after_s >= 1 and retry_after_s == int(retry_after_s):
        return "window"  # whole seconds until a slot of a window frees
    # A passing refusal at a level that went through before: the pause is all
    # it asks; cutting the limit for it would ratchet the run down.
    return "other"
