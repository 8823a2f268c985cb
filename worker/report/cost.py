"""What tokens cost: Mira's list prices, overrides, and the cost of a run.

One price table for everything that shows money: `validate`'s estimate, the
summary's `cost`, the metrics, and `collect`'s `cost_rub` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from worker.errors import ConfigError

CURRENCY = "RUB"
# Mira's list prices, rubles per million tokens: (input, output).
LIST_PRICES_RUB_PER_M: dict[str, tuple[float, float]] = {
    "mira": (50.0, 150.0),
    "mira-pro": (100.0, 300.0),
    "mira-max": (250.0, 750.0),
}
PRICE_HELP = (
    "price in rubles per million input,output tokens; repeatable "
    "(list prices: mira=50,150 mira-pro=100,300 mira-max=250,750)"
)

Prices = Mapping[str, tuple[float, float]]


def parse_price(text: str) -> tuple[str, tuple[float, float]]:
    """`MODEL=IN,OUT` (rubles per million tokens).

    Raises:
        ConfigError: the text is not in that form.
    """
    model, sep, rest = text.partition("=")
    try:
        if not sep or not model:
            raise ValueError
        price_in, price_out = (float(part) for part in rest.split(","))
        if min(price_in, price_out) < 0 or price_in != price_in:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--price {text!r}: expected MODEL=INPUT,OUTPUT (rubles per million "
            "tokens, 0 or more)"
        ) from None
    return model, (price_in, price_out)


def price_table(overrides: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """The list prices with `--price` overrides applied.

    Raises:
        ConfigError: an override is malformed.
    """
    prices = dict(LIST_PRICES_RUB_PER_M)
    prices.update(parse_price(text) for text in overrides)
    return prices


def tokens_cost(
    prices: Prices, model: str, prompt_tokens: int, completion_tokens: int
) -> float | None:
    """Rubles for these tokens of this model; None when its price is unknown."""
    price = prices.get(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def run_cost(
    prices: Prices, tokens_by_model: Mapping[str, tuple[int, int]]
) -> dict[str, Any]:
    """The summary's `cost` object (CONTRACT section 12)."""
    by_model: dict[str, Any] = {}
    total = 0.0
    unknown = []
    for model, (prompt, completion) in sorted(tokens_by_model.items()):
        cost = tokens_cost(prices, model, prompt, completion)
        if cost is None:
            unknown.append(model)
        else:
            total += cost
        by_model[model] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": None if cost is None else round(cost, 6),
        }
    result: dict[str, Any] = {
        "currency": CURRENCY,
        "total": round(total, 6),
        "by_model": by_model,
    }
    if unknown:
        result["note"] = (
            f"no price known for {', '.join(unknown)}: not in the total "
            "(add --price MODEL=IN,OUT)"
        )
    return result
