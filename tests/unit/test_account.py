"""What the account routes say, read as Mira's completions route applies it."""

from __future__ import annotations

from typing import Any

from worker.api.account import ACCOUNT_ROUTES, Account, RouteReply


def replies(**data: dict[str, Any] | None) -> dict[str, RouteReply]:
    return {
        name: RouteReply(data.get(name), None if data.get(name) else f"{name} missing")
        for name in ACCOUNT_ROUTES
    }


def test_the_cap_counts_from_the_daily_counter_and_minus_one_is_no_cap() -> None:
    usage = {"quota": {"daily_limit": 500, "remaining_today": 500, "plan": "pro"}}
    account = Account.read(replies(usage=usage, me={"daily_messages_used": 120}))
    assert (account.plan, account.daily_limit, account.daily_left) == ("pro", 500, 380)
    unlimited = {"quota": {"daily_limit": -1, "remaining_today": -1, "plan": "max"}}
    assert Account.read(replies(usage=unlimited)).daily_limit == -1
    assert "me missing" in Account.read(replies(usage=unlimited)).notes


def test_api_keys_live_by_an_active_code_plan() -> None:
    usage = {"quota": {"daily_limit": 20, "remaining_today": 20, "plan": "free"}}
    me = {
        "plan": "free",
        "code_plan": "pro",
        "code_plan_expires_at": "2999-01-01T00:00:00",
        "daily_messages_used": 30,
    }
    account = Account.read(replies(usage=usage, me=me))
    assert (account.plan, account.daily_limit, account.daily_left) == ("pro", 500, 470)
    expired = {**me, "code_plan_expires_at": "2001-01-01T00:00:00Z"}
    account = Account.read(replies(usage=usage, me=expired))
    assert (account.plan, account.daily_limit, account.daily_left) == ("free", 20, 0)


def test_min_plans_and_balance_come_from_whichever_route_has_them() -> None:
    pricing = {"models": [{"model": "mira-max", "min_plan": "max"}, "junk"]}
    account = Account.read(replies(balance={"balance_kopecks": 1234}, pricing=pricing))
    assert account.balance_kopecks == 1234
    assert account.min_plans == {"mira-max": "max"}
    assert account.daily_limit is None  # no usage route: days unknown
