"""What a 429 means, decided once: Mira's limits and the one decision a refusal
turns into (MIRA_API.md, "Rate limits" and "What the server really does").

Every Mira 429 reads the same; only its Retry-After tells them apart: 5 s above
the 3 requests in flight, 10 s when the GPU queue is full, the window's seconds
for the sliding window, 3600 at the daily message cap, 86400 once the monthly
token budget is spent. `judge` turns one, with what the run had in flight when
it was sent, into a `Refusal` that the throttle, the learner, the retry loop
and the counts all read; none of them works it out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from worker.domain.day import next_reset
from worker.exits import StopReason

MIRA_IN_FLIGHT = 3  # per user, across all of its keys
IN_FLIGHT_RETRY_AFTER_S = 5.0
GPU_QUEUE_RETRY_AFTER_S = 10.0
# Fixed values, not the time to midnight: stops, not pauses.
DAILY_CAP_RETRY_AFTER_S = 3600.0
MONTHLY_BUDGET_RETRY_AFTER_S = 86400.0
# Mira frees a leaked in-flight slot this long after the user's last acquire.
SLOT_EXPIRY_S = 300.0
# The longest pause while the slots are held elsewhere (5, 10, 20 ... 60 s).
HELD_PAUSE_MAX_S = 60.0

RefusalKind = Literal["in_flight", "window", "gpu_queue", "daily", "monthly", "other"]
REFUSAL_KINDS: tuple[RefusalKind, ...] = get_args(RefusalKind)
# The refusals Mira counts against the day's messages: its counter goes up
# before the in-flight check, and a window refusal stays in the window.
DAILY_MESSAGE_KINDS: frozenset[RefusalKind] = frozenset(
    {"in_flight", "window", "gpu_queue"}
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """What one refused request (or one Retry-After) means for the run.

    `kind` is None for a Retry-After on another status (a 503): a pause that is
    no refusal. `pause_s` is how long no request of the run may start; `stop` is
    the reason it ends the run instead (then nothing pauses); `uses_attempt` is
    False when the refusal was no fault of the job's (slots held elsewhere).
    """

    kind: RefusalKind | None
    retry_after_s: float
    pause_s: float
    stop: StopReason | None = None
    uses_attempt: bool = True
    held_elsewhere: bool = False  # Mira's cap full with fewer than 3 of ours
    waits_for_day: bool = False  # the daily cap, met with --until-done


def judge(
    retry_after_s: float,
    *,
    rate_limited: bool,
    in_flight_at_send: int,
    proven: int,
    max_pause_s: float,
    held_streak: int = 0,
    held_for_s: float = 0.0,
    slot_expiry_s: float = SLOT_EXPIRY_S,
    wait_for_day: bool = False,
) -> Refusal:
    """The decision for a retryable answer that carried a Retry-After; a 429
    (or a stream's queue_full event) when `rate_limited`.

    `in_flight_at_send` counts the run's requests at the server when this one
    was sent (itself included); `proven` is the most in flight that a full round
    trip went through at; `held_streak` is how many refusals in a row already
    found the slots held elsewhere, and `held_for_s` how long the slots the run
    knows of stay held (its own cut requests', an earlier run's), within Mira's
    `slot_expiry_s`; `wait_for_day` turns the daily cap from a stop into a wait
    for the next day (--until-done, when --deadline allows).
    """
    if not rate_limited:
        stop = StopReason.RATE_LIMIT_BUDGET if retry_after_s > max_pause_s else None
        return Refusal(None, retry_after_s, retry_after_s, stop)
    if retry_after_s == DAILY_CAP_RETRY_AFTER_S:
        if wait_for_day:
            return Refusal(
                "daily", retry_after_s, 0.0, uses_attempt=False, waits_for_day=True
            )
        return Refusal("daily", retry_after_s, 0.0, StopReason.DAILY_CAP)
    if retry_after_s == MONTHLY_BUDGET_RETRY_AFTER_S:
        return Refusal("monthly", retry_after_s, 0.0, StopReason.MONTHLY_BUDGET)
    if retry_after_s > max_pause_s:
        return Refusal("other", retry_after_s, 0.0, StopReason.RATE_LIMIT_BUDGET)
    if retry_after_s == IN_FLIGHT_RETRY_AFTER_S and in_flight_at_send < MIRA_IN_FLIGHT:
        # Mira's cap, full with fewer than its 3 of ours: the other slots are
        # held elsewhere. With some of ours ahead of it, the run keeps to those
        # (the learner) and the pause is the refusal's own; with none, nothing
        # goes through, and one request asks after a longer pause, or just when
        # they free if the run knows.
        pause_s = retry_after_s
        if in_flight_at_send <= 1:
            pause_s = held_pause_s(held_streak, held_for_s, slot_expiry_s)
        return Refusal(
            "in_flight", retry_after_s, pause_s, uses_attempt=False, held_elsewhere=True
        )
    return Refusal(
        _kind(retry_after_s, in_flight_at_send, proven), retry_after_s, retry_after_s
    )


def held_pause_s(streak: int, held_for_s: float, slot_expiry_s: float) -> float:
    """How long to wait before asking whether slots held elsewhere are free,
    after `streak` such refusals in a row: until they free when the run knows
    (`held_for_s`), else 5, 10, 20 ... s; never past their expiry, never less
    than Mira's own Retry-After."""
    if held_for_s > 0:
        pause_s = min(held_for_s, slot_expiry_s)
    else:
        longest_s = min(HELD_PAUSE_MAX_S, slot_expiry_s)
        pause_s = min(longest_s, IN_FLIGHT_RETRY_AFTER_S * 2.0**streak)
    return max(pause_s, IN_FLIGHT_RETRY_AFTER_S)


def _kind(retry_after_s: float, in_flight_at_send: int, proven: int) -> RefusalKind:
    if retry_after_s == IN_FLIGHT_RETRY_AFTER_S:
        return "in_flight"
    if retry_after_s == GPU_QUEUE_RETRY_AFTER_S:
        return "gpu_queue"
    if in_flight_at_send > max(proven, MIRA_IN_FLIGHT):
        # More in flight than ever went through, past Mira's documented cap
        # (below it, Mira's in-flight refusal says 5 s: another is a stray).
        return "in_flight"
    if retry_after_s >= 1 and retry_after_s == int(retry_after_s):
        return "window"  # whole seconds until a slot of a window frees
    # A passing refusal at a level that went through before: the pause is all
    # it asks; cutting the limit for it would ratchet the run down.
    return "other"


def daily_cap_times(hit_at: datetime) -> dict[str, str]:
    """When the daily cap was hit, and when it resets."""
    return {
        "hit_at": hit_at.isoformat(),
        "resets_at": next_reset(hit_at).isoformat(),
    }


def stop_message(
    refusal: Refusal,
    detail: str,
    *,
    max_pause_s: float | None = None,
    now: datetime | None = None,
) -> str:
    """Why a refusal that stops the run stops it, for the log and the summary."""
    if refusal.stop is StopReason.DAILY_CAP:
        now = now or datetime.now(UTC)
        left = next_reset(now) - now
        hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
        return (
            "Mira's daily message cap is reached (429, Retry-After: "
            f"{DAILY_CAP_RETRY_AFTER_S:g}); it resets at 00:00 UTC, in "
            f"{hours} h {minutes} min"
        )
    if refusal.stop is StopReason.MONTHLY_BUDGET:
        return f"Mira's monthly token budget is spent: {detail}"
    limit = "" if max_pause_s is None else f" {max_pause_s:g} s"
    return (
        f"the API asked to wait {refusal.retry_after_s:g} s (over "
        f"--max-retry-after{limit}): {detail}"
    )
