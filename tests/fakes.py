"""A fake clock whose sleep advances time instead of waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from aiohttp import ClientResponse
from aioresponses import aioresponses

WALL_START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class FakeClock:
    """`clock()` reads the time; `await clock.sleep(s)` moves it and records s;
    `wall()` is the UTC wall clock that moves with it."""

    def __init__(
        self, start: float = 1000.0, *, wall_start: datetime = WALL_START
    ) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._start = start
        self.wall_start = wall_start

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.wall_start + timedelta(seconds=self.now - self._start)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class SessionlessClient:
    """A client for in-process runs whose answers the test scripts: it has no
    session to open or close; subclasses write `complete`."""

    async def __aenter__(self) -> SessionlessClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class _SentWriter:
    """Stands for a request body already sent: aiohttp only reads its size."""

    output_size = 0


class CompatResponse(ClientResponse):
    """aiohttp 3.14 made `stream_writer` required; aioresponses 0.7.9 does not pass it.

    https://github.com/pnuckowski/aioresponses/issues/289 - drop this once fixed there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(*args, **kwargs)


class mock_http(aioresponses):
    """aioresponses whose canned responses build on aiohttp 3.14."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", CompatResponse)
        super().add(*args, **kwargs)
