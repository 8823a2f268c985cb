"""Mira's day: its message cap resets at 00:00 UTC (`completions.rs` compares
UTC dates), and the people on an account share the day with its batches.

What a run that waits for the next day needs to decide, as plain values: when
it wakes (the reset, plus a little seeded jitter so that the shards of one
account do not all start in the same second), and whether a cap met just after
a wake is a real one or the server's clock still on the old day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

# Shards on one account wake within this many seconds after the reset.
WAKE_JITTER_S = (1.0, 15.0)
# A cap met this soon after a wake, before any answer came, is the server's
# clock behind ours: asked again after a short pause, not after a day.
SKEW_WINDOW_S = 15 * 60.0
SKEW_PAUSE_S = 60.0

WaitReason = Literal["daily_cap", "daily_reserve"]


@dataclass(frozen=True, slots=True)
class DayCount:
    """What the account routes said of the day: messages left, the cap (-1:
    none), or a note saying why they said nothing."""

    left: int | None = None
    limit: int | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DayWait:
    """One wait for the day's reset: why, from when, until when."""

    reason: WaitReason
    since: datetime
    until: datetime

    def describe(self) -> str:
        """`until 00:00:07 UTC (in 3 h 12 min)`, from `since`."""
        left_s = max(0, int((self.until - self.since).total_seconds()))
        hours, rest = divmod(left_s, 60 * 60)
        minutes, seconds = divmod(rest, 60)
        if hours:
            span = f"{hours} h {minutes} min"
        else:
            span = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
        return f"until {self.until:%Y-%m-%d %H:%M:%S} UTC (in {span})"


def next_reset(moment: datetime) -> datetime:
    """The next 00:00 UTC, when Mira's daily cap resets."""
    return (moment + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def wake_jitter_s(stem: str, shard: tuple[int, int]) -> float:
    """The seconds after the reset this run wakes: the same for a given input
    and shard, and spread over WAKE_JITTER_S across shards."""
    low, high = WAKE_JITTER_S
    return random.Random(f"{stem}/{shard[0]}/{shard[1]}").uniform(low, high)


def wake_at(
    now: datetime,
    *,
    jitter_s: float,
    woke_at: datetime | None = None,
    answered_since_wake: bool = True,
) -> datetime:
    """When to ask again after the day's cap was met at `now`.

    The next reset plus the jitter; but a cap met within SKEW_WINDOW_S of the
    last wake, with no answer since, says the server's day has not turned yet:
    SKEW_PAUSE_S from now.
    """
    if (
        woke_at is not None
        and not answered_since_wake
        and (now - woke_at).total_seconds() < SKEW_WINDOW_S
    ):
        return now + timedelta(seconds=SKEW_PAUSE_S)
    return next_reset(now) + timedelta(seconds=jitter_s)
