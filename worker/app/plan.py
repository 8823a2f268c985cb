"""`validate --online`: the batch planned against the account, read from Mira's
account routes (each optional) with the run's key, sending no completion."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import orjson

from worker.api.account import ACCOUNT_ROUTES, Account, AccountReader
from worker.api.network import check_base_url_security
from worker.app.validate import (
    ValidationReport,
    render_report,
    report_object,
    validate_file,
)
from worker.config import Settings, load_api_key
from worker.domain.prices import PriceBook, charged_prices
from worker.logs import emit, register_secret

# Requests beyond one per job: on Mira every refusal uses one of the day's
# messages. `bench/run.py mira` saw 2 of 152 and 1 of 76 refused; 3% covers it.
RETRY_ALLOWANCE = 0.03
PLAN_RANK = {"free": 0, "pro": 1, "max": 2, "enterprise": 3}


@dataclass(frozen=True, slots=True)
class Plan:
    """The batch against the account: what it has, what the batch needs, how
    long it takes at the daily cap, and what to warn of (None: no route said)."""

    plan: str | None
    daily_limit: int | None  # -1: no cap, as Mira says it
    daily_used: int | None
    daily_left: int | None
    balance_rub: float | None
    overage_billing: bool | None
    prices: str
    prices_per_1k_rub: dict[str, tuple[float, float] | None]
    messages_needed: int
    retry_allowance: float
    estimated_cost_rub: float
    days: int | None = None
    finish_date: str | None = None
    daily_reserve: int | None = None  # of each day, left to the account's people
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The plan as `validate --online --format json` prints it."""
        return asdict(self)


async def read_plan(
    settings: Settings,
    api_key: str | None,
    report: ValidationReport,
    overrides: list[str],
    today: date,
) -> tuple[PriceBook, Plan]:
    """Read the account routes, then plan the batch at the prices they give.

    Raises:
        ConfigError: the CA bundle cannot be used.
    """
    reader = AccountReader(settings.base_url, api_key, ca_bundle=settings.ca_bundle)
    replies = await reader.read_all(ACCOUNT_ROUTES)
    account = Account.read(replies)
    if all(reply.data is None for reply in replies.values()):
        account.notes.insert(
            0,
            "the server serves none of Mira's account routes: no plan against the "
            "account (the estimate above stands)",
        )
    pricing = replies["pricing"].data
    book = PriceBook.build(
        charged_prices(pricing) or None if pricing else None, overrides
    )
    plan = plan_batch(
        report,
        account,
        book,
        dedupe=settings.dedupe,
        today=today,
        reserve=settings.daily_reserve,
    )
    return book, plan


def plan_batch(
    report: ValidationReport,
    account: Account,
    prices: PriceBook,
    *,
    dedupe: bool,
    today: date,
    reserve: int | None = None,
) -> Plan:
    """The plan: messages needed, days at the daily cap (less --daily-reserve
    each day), cost against the balance, and the warnings they call for."""
    jobs = report.valid - (report.identical if dedupe else 0)
    messages = math.ceil(jobs * (1 + RETRY_ALLOWANCE) + report.reasks_expected)
    cost = report.total_cost(prices)
    days, finish = _days(account, messages, today, reserve or 0)
    return Plan(
        plan=account.plan,
        daily_limit=account.daily_limit,
        daily_used=account.daily_used,
        daily_left=account.daily_left,
        balance_rub=None
        if account.balance_kopecks is None
        else account.balance_kopecks / 100,
        overage_billing=account.overage,
        prices=prices.source,
        prices_per_1k_rub={
            model: prices.per_1k_rubles(model) for model in sorted(report.models)
        },
        messages_needed=messages,
        retry_allowance=RETRY_ALLOWANCE,
        estimated_cost_rub=round(cost, 2),
        days=days,
        finish_date=finish,
        daily_reserve=reserve,
        warnings=_warnings(report, account, messages, cost, reserve or 0),
        notes=account.notes,
    )


def _days(
    account: Account, messages: int, today: date, reserve: int
) -> tuple[int | None, str | None]:
    """Days at the daily cap (it resets at 00:00 UTC) with `reserve` of each
    day left to people, and the finishing date; unknown without the cap, and
    never with a reserve that leaves nothing."""
    limit = account.daily_limit
    if limit is None:
        return None, None
    left = max(0, (account.daily_left or 0) - reserve)
    days = 1
    if limit >= 0 and not account.overage and messages > left:
        per_day = limit - reserve
        if per_day <= 0:
            return None, None
        days += math.ceil((messages - left) / per_day)
    return days, (today + timedelta(days=days - 1)).isoformat()


def _warnings(
    report: ValidationReport,
    account: Account,
    messages: int,
    cost: float,
    reserve: int,
) -> list[str]:
    found = []
    limit = account.daily_limit
    if reserve and limit is not None and 0 <= limit <= reserve:
        found.append(
            f"--daily-reserve {reserve} leaves nothing of a day of {limit} "
            "messages: the run would never send"
        )
    balance = account.balance_kopecks
    if balance is not None and cost * 100 > balance:
        found.append(
            f"the balance ({balance / 100:,.2f} RUB) will not cover the batch "
            f"(about {cost:,.2f} RUB): top up, or cap the run with --max-cost"
        )
    left = account.daily_left
    if account.overage and limit is not None and limit >= 0:
        past = messages - (left if left is not None else limit)
        if past > 0:
            found.append(
                f"overage billing is on: about {past:,} messages past today's cap "
                "will be charged to the balance"
            )
    rank = PLAN_RANK.get(account.plan or "")
    for model, count in sorted(report.models.items()):
        needs = account.min_plans.get(model)
        if rank is not None and needs in PLAN_RANK and PLAN_RANK[needs] > rank:
            found.append(
                f"{count} jobs use {model}, which needs the {needs} plan (this "
                f"account: {account.plan}); they will fail with 403"
            )
    return found


def _prices(table: dict[str, tuple[float, float] | None]) -> str:
    """`mira 0.10 / 0.30` for each model, RUB per 1,000 words in and out."""
    return (
        ", ".join(
            f"{model} {'no price' if p is None else f'{p[0]:.2f} / {p[1]:.2f}'}"
            for model, p in table.items()
        )
        + " RUB per 1,000 words in / out"
    )


def render_plan(plan: Plan) -> list[str]:
    """The plan, for people."""
    lines = ["account (read with the key; no completion sent):"]

    def known(value: object, text: str) -> str:
        return "unknown" if value is None else text

    limit = plan.daily_limit
    cap = "no cap" if limit is not None and limit < 0 else f"cap {limit}"
    used = "?" if plan.daily_used is None else plan.daily_used
    left = "?" if plan.daily_left is None else plan.daily_left
    balance = plan.balance_rub
    lines += [
        f"  plan: {plan.plan or 'unknown'}",
        "  daily messages: "
        + known(
            limit,
            f"{used} used, {left} left today ({cap}; it resets at 00:00 UTC)",
        ),
        "  balance: "
        + known(balance, f"{balance or 0:,.2f} RUB")
        + "; overage billing "
        + {True: "on", False: "off", None: "unknown"}[plan.overage_billing],
        f"  prices: {plan.prices} ({_prices(plan.prices_per_1k_rub)})",
        f"  messages needed: about {plan.messages_needed:,} (one per job, "
        f"+{plan.retry_allowance:.0%} for refusals and retries, and re-asks "
        "for JSON where a schema asks)",
        "  days at the daily cap: "
        + known(plan.days, f"{plan.days}, finishing {plan.finish_date} (UTC)")
        + (
            f"; {plan.daily_reserve} of each day left to the people on the "
            "account (--daily-reserve)"
            if plan.daily_reserve
            else ""
        ),
        f"  estimated cost: about {plan.estimated_cost_rub:,.2f} RUB"
        + ("" if balance is None else f" of a {balance:,.2f} RUB balance"),
    ]
    lines += [f"  warning: {text}" for text in plan.warnings]
    lines += [f"  note: {text}" for text in plan.notes]
    return lines


def validate(
    settings: Settings,
    source: str,
    *,
    online: bool = False,
    as_json: bool = False,
    price_overrides: Sequence[str] = (),
    show: int | None = None,
) -> int:
    """`mira-batch validate`: the report on stdout; 1 when lines are invalid.

    Raises:
        ConfigError: the input cannot be read, a bad --price, or (online) a key
            of the wrong shape. A missing key is a note: the pricing route
            needs none.
    """
    prices = PriceBook.build(None, price_overrides)
    key = None
    if online:
        check_base_url_security(settings)
        if settings.api_key is not None or settings.api_key_file is not None:
            key = load_api_key(settings)
            register_secret(key)
    report = asyncio.run(validate_file(source, settings, show=show))
    plan = None
    if online:
        today = datetime.now(UTC).date()
        prices, plan = asyncio.run(
            read_plan(settings, key, report, list(price_overrides), today)
        )
    if as_json:
        document = report_object(source, report, prices)
        if plan is not None:
            document["account"] = plan.to_json()
        emit(sys.stdout, orjson.dumps(document).decode())
    else:
        text = render_report(source, report, prices)
        if plan is not None:
            text += "\n" + "\n".join(render_plan(plan))
        emit(sys.stdout, text)
    return 1 if report.invalid else 0
