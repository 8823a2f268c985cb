"""The flow control of one run, wired: the limits the settings ask for, the
day (--until-done, --daily-reserve, over Mira's usage route), the slots an
earlier run may have left held, and what the shards of the input tell one
another."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.api.account import read_day
from worker.api.keys import KeyRing
from worker.app.prepare import Prepared
from worker.config import Settings
from worker.domain.day import DayCount, wake_jitter_s
from worker.files.outputs import RunFiles
from worker.files.shards import SiblingsDone, WindowBoard
from worker.flow.day import DayBudget, DayRules
from worker.flow.throttle import FlowLimits, Throttle
from worker.report.stats import RunStats

# The requests an earlier run had in flight when it stopped went out after
# its last write: their slots are held a little past that write's expiry.
HELD_MARGIN_S = 2.0


@dataclass(frozen=True, slots=True)
class Time:
    """The run's clocks: monotonic for the flow control, the wall for Mira's
    day, and the sleep that goes with them (all injected in tests)."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    wall: Callable[[], datetime]


def build_throttle(
    settings: Settings,
    files: RunFiles,
    ready: Prepared,
    *,
    keys: KeyRing,
    stats: RunStats,
    time: Time,
) -> Throttle:
    """The throttle every request of the run waits its turn at."""
    started_at = time.wall().timestamp()
    place = _place(files)
    return Throttle(
        FlowLimits(
            concurrency=settings.concurrency,
            rpm=settings.rpm,
            tpm=settings.tpm,
            shard=place,
            max_pause_s=settings.max_retry_after_s,
            first_alone=ready.unclean,
            held_for_s=_held_for_s(settings, ready, started_at),
            slot_expiry_s=settings.slot_expiry_s,
            others_done=SiblingsDone(files, since=started_at),
            board=WindowBoard(files, since=started_at) if place[1] > 1 else None,
        ),
        clock=time.clock,
        sleep=time.sleep,
        remaining_jobs=stats.remaining_jobs,
        progress=stats.progress,
        day=day_budget(settings, files, keys=keys, time=time),
    )


def _place(files: RunFiles) -> tuple[int, int]:
    """The run's shard as (index, count); (0, 1) when the input is not split."""
    shard = files.shard
    return (shard.index, shard.count) if shard else (0, 1)


def _held_for_s(settings: Settings, ready: Prepared, now: float) -> float:
    """How long an earlier run that did not end cleanly may still hold slots
    at Mira: until the expiry after its last request (its last write)."""
    if not ready.unclean or ready.last_written_at is None:
        return 0.0
    until = ready.last_written_at + settings.slot_expiry_s + HELD_MARGIN_S
    return max(0.0, until - now)


def day_budget(
    settings: Settings, files: RunFiles, *, keys: KeyRing, time: Time
) -> DayBudget | None:
    """The day's messages, when --until-done or --daily-reserve asks for them."""
    if not settings.until_done and settings.daily_reserve is None:
        return None
    deadline = None
    if settings.deadline_s is not None:
        deadline = time.wall() + timedelta(seconds=settings.deadline_s)

    async def read() -> DayCount:
        return await read_day(settings, keys.key)  # the key in use by then

    return DayBudget(
        DayRules(
            reserve=settings.daily_reserve,
            until_done=settings.until_done,
            jitter_s=wake_jitter_s(files.stem, _place(files)),
            deadline=deadline,
        ),
        wall=time.wall,
        sleep=time.sleep,
        read=read,
    )
