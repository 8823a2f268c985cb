"""Mira's account routes (MIRA_API.md, "Account routes"): read with the run's key,
each one optional. A route that is missing, refuses or is unreachable is a note,
never an error; nothing here sends a completion."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson
from yarl import URL

from worker.api.body import read_at_most
from worker.api.network import new_session, route_for, wire_to
from worker.api.wire import Wire
from worker.config import Settings
from worker.domain.day import DayCount
from worker.domain.prices import PriceBook, charged_prices
from worker.errors import TransportError, UntrustedServerError

# Under the API host's root, not the base URL's /v1.
ROUTES = {
    "usage": "/api/v1/auth/me/usage",
    "me": "/api/v1/auth/me",
    "balance": "/api/v1/billing/balance",
    "pricing": "/api/v1/billing/pricing",
}
ACCOUNT_ROUTES = tuple(ROUTES)
# Messages a day by plan for API keys (`services/plans.rs`); -1: no cap.
CODE_DAILY_MESSAGES = {"free": 20, "pro": 500, "max": -1, "enterprise": -1}
KEYLESS = frozenset({"pricing"})
_MAX_BODY_BYTES = 1024 * 1024

log = logging.getLogger("worker.run")


def account_root(base_url: str) -> str:
    """`https://api.vmira.ai` for the base URL `https://api.vmira.ai/v1`."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


@dataclass(frozen=True, slots=True)
class RouteReply:
    """One route's JSON object, or a note saying why there is none."""

    data: dict[str, object] | None
    note: str | None = None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class Account:
    """What the account routes said; None where no route said it."""

    plan: str | None = None
    daily_limit: int | None = None  # -1: unlimited, as Mira says it
    daily_used: int | None = None
    daily_left: int | None = None
    balance_kopecks: int | None = None
    overage: bool | None = None
    min_plans: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, replies: dict[str, RouteReply]) -> Account:
        """The facts of whichever routes answered; a note for each that did not."""
        account = cls(notes=[r.note for r in replies.values() if r.note])
        usage, me, balance, pricing = (
            replies[name].data or {} if name in replies else {}
            for name in ACCOUNT_ROUTES
        )
        found = usage.get("quota")
        quota: dict[str, object] = found if isinstance(found, dict) else {}
        limit = _int(quota.get("daily_limit"))
        # Mira says -1 for no cap; null is read the same way.
        account.daily_limit = -1 if quota and limit is None else limit
        account.daily_used = used = _int(me.get("daily_messages_used"))
        account.daily_left = _int(quota.get("remaining_today"))
        if limit is not None and limit >= 0 and used is not None:
            # The counter the cap checks (usage's own count can lag behind it).
            account.daily_left = max(0, limit - used)
        account.plan = _effective_plan(me, quota)
        if account.plan != quota.get("plan") and account.plan in CODE_DAILY_MESSAGES:
            # The usage route reads the web plan; API keys live by the code plan.
            account.daily_limit = CODE_DAILY_MESSAGES[account.plan]
            if account.daily_limit >= 0 and used is not None:
                account.daily_left = max(0, account.daily_limit - used)
        account.balance_kopecks = _int(me.get("balance_kopecks"))
        if account.balance_kopecks is None:
            account.balance_kopecks = _int(balance.get("balance_kopecks"))
        overage = me.get("allow_overage_billing")
        account.overage = overage if isinstance(overage, bool) else None
        models = pricing.get("models")
        for entry in models if isinstance(models, list) else ():
            if isinstance(entry, dict) and isinstance(
                plan := entry.get("min_plan"), str
            ):
                account.min_plans[str(entry.get("model"))] = plan
        return account


def _effective_plan(me: dict[str, object], quota: dict[str, object]) -> str | None:
    """The plan API calls live by: an active code plan, else the account's
    (`completions.rs`: effective_plan)."""
    code_plan, expires = me.get("code_plan"), me.get("code_plan_expires_at")
    if isinstance(code_plan, str) and code_plan != "free":
        try:
            ends = None if expires is None else datetime.fromisoformat(str(expires))
        except ValueError:
            ends = None  # an unreadable date: trust the plan it names
        if ends is not None and ends.tzinfo is None:
            ends = ends.replace(tzinfo=UTC)
        active = ends is None or ends > datetime.now(UTC)
        if active:
            return code_plan
    plan = me.get("plan") or quota.get("plan")
    return plan if isinstance(plan, str) else None


class AccountReader:
    """Reads the account routes of one base URL, through its proxy and TLS trust.

    On a direct route they are read on the lean path (wire.py), so a run that
    reads its prices never waits for aiohttp to be imported; through a proxy,
    with aiohttp.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        ca_bundle: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._root = account_root(base_url)
        self._root_url = URL(self._root)
        self._api_key = api_key
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._route = route_for(base_url)

    async def read_all(self, names: tuple[str, ...]) -> dict[str, RouteReply]:
        """Each named route's reply, read at once on one pool of connections.

        Raises:
            ConfigError: the CA bundle cannot be used.
        """
        if self._route.proxy is not None:
            replies = await self._read_through_proxy(names)
        else:
            wire = wire_to(self._root_url, self._ca_bundle, limit=len(ROUTES))
            try:
                replies = await asyncio.gather(
                    *(
                        self._read(name, partial(self._get, wire, name))
                        for name in names
                    )
                )
            finally:
                wire.close()
        return dict(zip(names, replies, strict=True))

    async def _get(self, wire: Wire, name: str) -> tuple[int, bytes, bool]:
        path = self._root_url.raw_path.rstrip("/") + ROUTES[name]
        reply = await wire.get(path, self._headers(name), limit=_MAX_BODY_BYTES)
        return reply.status, reply.body, reply.complete

    async def _read_through_proxy(self, names: tuple[str, ...]) -> list[RouteReply]:
        import aiohttp  # only through a proxy: see the class

        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        session = new_session(
            self._route,
            {},
            ca_bundle=self._ca_bundle,
            timeout=timeout,
            limit=len(ROUTES),
        )

        async def fetch(name: str) -> tuple[int, bytes, bool]:
            url, headers = self._root + ROUTES[name], self._headers(name)
            try:
                async with self._route.request(
                    session, "GET", url, headers, timeout=timeout
                ) as resp:
                    raw, complete = await read_at_most(resp, _MAX_BODY_BYTES)
                    return resp.status, raw, complete
            except aiohttp.ClientError as exc:
                raise TransportError(type(exc).__name__) from exc

        async with session:
            return await asyncio.gather(
                *(self._read(name, partial(fetch, name)) for name in names)
            )

    def _headers(self, name: str) -> dict[str, str]:
        if name in KEYLESS or self._api_key is None:
            return {}
        return {"Authorization": f"Bearer {self._api_key}"}

    async def _read(
        self, name: str, fetch: Callable[[], Awaitable[tuple[int, bytes, bool]]]
    ) -> RouteReply:
        """One route's JSON object, or why there is none."""
        path = ROUTES[name]
        if name not in KEYLESS and self._api_key is None:
            return RouteReply(
                None, f"{path} not read: no key (MIRA_API_KEY, MIRA_API_KEY_FILE)"
            )
        try:
            async with asyncio.timeout(self._timeout_s):
                status, raw, complete = await fetch()
        except TimeoutError:
            return RouteReply(
                None, f"{path} did not answer in time{self._route.through}"
            )
        except (TransportError, UntrustedServerError, ConnectionError) as exc:
            what = type(exc.__cause__ or exc).__name__
            return RouteReply(
                None, f"{path} is unreachable{self._route.through}: {what}"
            )
        if status != 200:
            what = "is not served" if status in (404, 405) else "was refused"
            return RouteReply(None, f"{path} {what} (HTTP {status})")
        try:
            data = orjson.loads(raw) if complete else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return RouteReply(None, f"{path} answered with no JSON object")
        return RouteReply(data)


async def read_day(settings: Settings, api_key: str) -> DayCount:
    """The day's messages left, and the cap, from the usage and `me` routes
    (within --timeout).

    Raises:
        ConfigError: the CA bundle is unusable.
    """
    reader = AccountReader(
        settings.base_url,
        api_key,
        ca_bundle=settings.ca_bundle,
        timeout_s=settings.request_timeout_s,
    )
    replies = await reader.read_all(("usage", "me"))
    account = Account.read(replies)
    note = "; ".join(account.notes) or None
    return DayCount(account.daily_left, account.daily_limit, note)


async def read_prices(settings: Settings, overrides: Sequence[str] = ()) -> PriceBook:
    """The prices Mira's pricing route says it charges (within --timeout),
    else the list prices; `--price` over either.

    Raises:
        ConfigError: an override is malformed, or the CA bundle is unusable.
    """
    book = PriceBook.build(None, overrides)  # a bad --price fails before the network
    reader = AccountReader(
        settings.base_url,
        None,
        ca_bundle=settings.ca_bundle,
        timeout_s=settings.request_timeout_s,
    )
    reply = (await reader.read_all(("pricing",)))["pricing"]
    charged = charged_prices(reply.data) if reply.data is not None else {}
    if not charged:
        log.info("the summary's cost is at list prices: %s", reply.note or "no prices")
        return book
    return PriceBook.build(charged, overrides)
