"""The price book: charged prices floored per answer as Mira bills, list prices,
--price over either, and what the summary says it used."""

from __future__ import annotations

import pytest

from worker.domain.prices import ChargedPrice, PriceBook, charged_prices, run_cost
from worker.errors import ConfigError
from worker.report.tally import Tally
from worker.sim.faults import charge_kopecks

ROUTE = {
    "models": [
        {
            "model": "mira",
            "input_price_per_1k_rubles": 0.1,
            "output_price_per_1k_rubles": 0.3,
            "thinking_surcharge_percent": 0,
            "min_plan": "free",
        },
        {
            "model": "mira-thinking",
            "input_price_per_1k_rubles": 0.5,
            "output_price_per_1k_rubles": 1.5,
            "thinking_surcharge_percent": 20,
        },
        {"model": "broken", "input_price_per_1k_rubles": "a lot"},
        "not an entry",
    ]
}


def test_the_pricing_route_reads_as_whole_kopecks() -> None:
    prices = charged_prices(ROUTE)
    assert prices == {
        "mira": ChargedPrice(10, 30, 0),
        "mira-thinking": ChargedPrice(50, 150, 20),
    }
    assert charged_prices({"models": "nope"}) == {}


def test_each_answer_is_floored_to_kopecks_as_mira_bills_it() -> None:
    book = PriceBook.build(charged_prices(ROUTE))
    assert book.source == "charged"
    tally = Tally(prices=book)
    answers = [(99, 33), (150, 20), (7, 1), (1000, 999)]
    for prompt, completion in answers:
        tally.used(
            {"prompt_tokens": prompt, "completion_tokens": completion}, model="mira"
        )
    # 99 words at 10 kopecks per 1K is 0.99 kopecks: floored to 0, each time.
    expected = sum(charge_kopecks("mira", p, c) for p, c in answers)
    assert expected == 0 + (1 + 0) + 0 + (10 + 29)
    stats = tally.stats
    tokens = {m: (p, c) for m, (p, c) in stats.tokens_by_model.items()}
    cost = run_cost(book, tokens, stats.kopecks_by_model)
    assert cost.prices == "charged"
    assert cost.total == expected / 100
    assert PriceBook.from_json(cost.book) == book  # kept for collect, offline
    # The same tokens priced in one sum would say more than Mira charged.
    assert book.kopecks("mira", 1256, 1053) == 12 + 31 > expected


def test_the_thinking_surcharge_is_on_the_floored_output() -> None:
    price = ChargedPrice(50, 150, 20)
    assert price.kopecks(0, 1000) == 150 + 30
    assert price.kopecks(0, 10) == 1  # floor(1.5) = 1, and 20% of 1 floors to 0


def test_list_prices_when_the_route_is_silent_and_overrides_name_themselves() -> None:
    listed = PriceBook.build(None)
    assert listed.source == "list"
    assert listed.rubles("mira", 1_000_000, 0) == pytest.approx(50.0)
    assert listed.rubles("mystery", 5, 5) is None
    overridden = PriceBook.build(charged_prices(ROUTE), ["mira=1000,1000"])
    assert overridden.source == "override"
    assert overridden.rubles("mira", 1000, 0) == pytest.approx(1.0)
    assert overridden.kopecks("mira-thinking", 1000, 0) == 50  # still charged
    with pytest.raises(ConfigError, match="--price"):
        PriceBook.build(None, ["mira=cheap"])


def test_a_model_without_a_price_is_named_and_left_out() -> None:
    cost = run_cost(
        PriceBook(),
        {"mira": (1_000_000, 2_000_000), "mystery": (5, 5)},
        {"mira": 35_000.0},
    )
    assert cost.by_model["mira"].cost == 350
    assert cost.by_model["mystery"].cost is None
    assert cost.total == 350
    assert cost.prices == "list"
    assert cost.note is not None
    assert "mystery" in cost.note


def test_a_model_missing_from_the_pricing_table_is_billed_nothing() -> None:
    book = PriceBook.build(charged_prices(ROUTE))
    assert book.kopecks("mira-max", 5000, 5000) == 0.0  # Mira skips its billing
    assert book.per_1k_rubles("mira-max") == (0.0, 0.0)
    cost = run_cost(book, {"mira-max": (5000, 5000)}, {"mira-max": 0.0})
    assert cost.total == 0
    assert "mira-max: not in Mira's pricing table" in (cost.note or "")
    assert PriceBook.build(None).kopecks("mira-thinking", 5, 5) is None
