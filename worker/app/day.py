"""The day of one run, wired: --until-done and --daily-reserve over Mira's
usage route, read with the key in use, and the wake jitter of its input and
shard."""

from __future__ import annotations

from datetime import timedelta

from worker.api.account import read_day
from worker.api.keys import KeyRing
from worker.config import Settings
from worker.domain.day import DayCount, wake_jitter_s
from worker.domain.job import Shard
from worker.flow.clock import Sleep
from worker.flow.day import DayBudget, DayRules, Wall


def day_budget(
    settings: Settings,
    *,
    stem: str,
    shard: Shard | None,
    keys: KeyRing,
    wall: Wall,
    sleep: Sleep,
) -> DayBudget | None:
    """The day's messages, when --until-done or --daily-reserve asks for them."""
    if not settings.until_done and settings.daily_reserve is None:
        return None
    deadline = None
    if settings.deadline_s is not None:
        deadline = wall() + timedelta(seconds=settings.deadline_s)

    async def read() -> DayCount:
        return await read_day(settings, keys.key)  # the key in use by then

    where = (shard.index, shard.count) if shard else (0, 1)
    return DayBudget(
        DayRules(
            reserve=settings.daily_reserve,
            until_done=settings.until_done,
            jitter_s=wake_jitter_s(stem, where),
            deadline=deadline,
        ),
        wall=wall,
        sleep=sleep,
        read=read,
    )
