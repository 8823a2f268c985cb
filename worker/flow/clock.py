"""Time for flow control, injected everywhere so tests run on fake time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# The default clock: time.monotonic itself, with no wrapper on the hot path.
monotonic: Clock = time.monotonic


async def real_sleep(seconds: float) -> None:
    """The default sleep."""
    await asyncio.sleep(seconds)
