"""What answers cost: the price book (charged, list or overridden prices) and the
cost of a run.

One price book for everything that shows money: `validate`'s estimate, the
summary's `cost`, the metrics, `--max-cost`, and `collect`'s `cost_rub` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from worker.domain.summary import Cost, ModelCost
from worker.errors import ConfigError

CURRENCY = "RUB"
# Mira's list prices in its docs, rubles per million tokens: (input, output).
LIST_PRICES_RUB_PER_M: dict[str, tuple[float, float]] = {
    "mira": (50.0, 150.0),
    "mira-pro": (100.0, 300.0),
    "mira-max": (250.0, 750.0),
}
PRICE_HELP = (
    "price in rubles per million input,output tokens; repeatable; overrides the "
    "prices Mira's pricing route says it charges (list prices when it does not "
    "answer: mira=50,150 mira-pro=100,300 mira-max=250,750)"
)

PriceSource = Literal["charged", "list", "override"]


@dataclass(frozen=True, slots=True)
class ChargedPrice:
    """A price as Mira's billing holds it: whole kopecks per 1,000 words, and a
    surcharge on output (thinking models)."""

    input_kopecks_per_1k: int
    output_kopecks_per_1k: int
    surcharge_percent: int = 0

    def kopecks(self, prompt: int, completion: int) -> int:
        """What one answer is charged, as Mira's `calculate_charge` floors it."""
        output = completion * self.output_kopecks_per_1k // 1000
        output += output * self.surcharge_percent // 100
        return prompt * self.input_kopecks_per_1k // 1000 + output


@dataclass(frozen=True, slots=True)
class PriceBook:
    """The prices a run counts cost at, and where they came from."""

    source: PriceSource = "list"
    # rubles per million tokens (the list prices and --price)
    per_million: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(LIST_PRICES_RUB_PER_M)
    )
    charged: Mapping[str, ChargedPrice] = field(default_factory=dict)
    # Mira bills nothing for a model its pricing table lacks ("no pricing for
    # model (billing skipped)"): with the route's prices, such a model costs 0.
    unlisted_free: bool = False

    @classmethod
    def build(
        cls, charged: Mapping[str, ChargedPrice] | None, overrides: Iterable[str] = ()
    ) -> PriceBook:
        """The charged prices when Mira's pricing route gave them (else the list
        prices), with `--price` overrides on top.

        Raises:
            ConfigError: an override is malformed.
        """
        base = cls("charged", {}, dict(charged), True) if charged else cls()
        return base.overridden(overrides)

    def overridden(self, overrides: Iterable[str]) -> PriceBook:
        """These prices with `--price MODEL=IN,OUT` over them.

        Raises:
            ConfigError: an override is malformed.
        """
        given = dict(parse_price(text) for text in overrides)
        if not given:
            return self
        return PriceBook(
            "override",
            {**self.per_million, **given},
            {m: p for m, p in self.charged.items() if m not in given},
            self.unlisted_free,
        )

    def unlisted(self, model: str) -> bool:
        """Whether Mira's pricing table lacks the model, so it bills it nothing."""
        return (
            self.unlisted_free
            and model not in self.charged
            and model not in self.per_million
        )

    def kopecks(self, model: str, prompt: int, completion: int) -> float | None:
        """What one answer costs, kopecks; None when its model has no price."""
        charged = self.charged.get(model)
        if charged is not None:
            return float(charged.kopecks(prompt, completion))
        price = self.per_million.get(model)
        if price is None:
            return 0.0 if self.unlisted_free else None
        return (prompt * price[0] + completion * price[1]) / 10_000

    def rubles(self, model: str, prompt: int, completion: int) -> float | None:
        """What one answer costs, RUB; None when its model has no price."""
        kopecks = self.kopecks(model, prompt, completion)
        return None if kopecks is None else kopecks / 100

    def summary(
        self,
        tokens_by_model: Mapping[str, tuple[int, int]],
        kopecks_by_model: Mapping[str, float],
    ) -> Cost:
        """The summary's `cost` at these prices (see `run_cost`)."""
        return run_cost(self, tokens_by_model, kopecks_by_model)

    def to_json(self) -> dict[str, object]:
        """The book as the summary keeps it, for `collect` to price with."""
        return {
            "source": self.source,
            "per_million": {m: list(p) for m, p in self.per_million.items()},
            "charged": {
                m: [
                    p.input_kopecks_per_1k,
                    p.output_kopecks_per_1k,
                    p.surcharge_percent,
                ]
                for m, p in self.charged.items()
            },
            "unlisted_free": self.unlisted_free,
        }

    @classmethod
    def from_json(cls, data: object) -> PriceBook | None:
        """A book the summary kept; None when it does not read as one."""
        if not isinstance(data, dict) or data.get("source") not in get_args(
            PriceSource
        ):
            return None
        try:
            per_million = {
                str(m): (float(p[0]), float(p[1]))
                for m, p in dict(data.get("per_million") or {}).items()
            }
            charged = {
                str(m): ChargedPrice(int(p[0]), int(p[1]), int(p[2]))
                for m, p in dict(data.get("charged") or {}).items()
            }
        except (TypeError, ValueError, IndexError):
            return None
        return cls(
            data["source"], per_million, charged, bool(data.get("unlisted_free"))
        )

    def per_1k_rubles(self, model: str) -> tuple[float, float] | None:
        """A model's price, RUB per 1,000 tokens (words, as Mira counts), in/out."""
        charged = self.charged.get(model)
        if charged is not None:
            return (
                charged.input_kopecks_per_1k / 100,
                charged.output_kopecks_per_1k / 100,
            )
        price = self.per_million.get(model)
        if price is None:
            return (0.0, 0.0) if self.unlisted(model) else None
        return (price[0] / 1000, price[1] / 1000)

    def describe(self) -> str:
        """Where the prices come from, for people."""
        return {
            "charged": "the prices Mira's pricing route says it charges",
            "list": "Mira's list prices (its pricing route did not answer)",
            "override": "--price, over the other prices",
        }[self.source]


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


def run_cost(
    book: PriceBook,
    tokens_by_model: Mapping[str, tuple[int, int]],
    kopecks_by_model: Mapping[str, float],
) -> Cost:
    """The summary's `cost` (CONTRACT sections 12 and 15): each answer priced
    as it came, so charged prices floor per answer as Mira bills."""
    by_model: dict[str, ModelCost] = {}
    total = 0.0
    unknown = []
    for model, (prompt, completion) in sorted(tokens_by_model.items()):
        kopecks = kopecks_by_model.get(model)
        if kopecks is None:
            unknown.append(model)
        else:
            total += kopecks
        by_model[model] = ModelCost(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=None if kopecks is None else round(kopecks / 100, 6),
        )
    notes = []
    if unknown:
        notes.append(
            f"no price known for {', '.join(unknown)}: not in the total "
            "(add --price MODEL=IN,OUT)"
        )
    if unlisted := [m for m in sorted(tokens_by_model) if book.unlisted(m)]:
        notes.append(
            f"{', '.join(unlisted)}: not in Mira's pricing table, so Mira bills "
            "it nothing (its billing skips a model without a price)"
        )
    return Cost(
        currency=CURRENCY,
        total=round(total / 100, 6),
        prices=book.source,
        by_model=by_model,
        note="; ".join(notes) or None,
        book=book.to_json(),
    )


def charged_prices(pricing: Mapping[str, Any]) -> dict[str, ChargedPrice]:
    """The prices of Mira's pricing route (`{"models": [...]}`, rubles per 1K
    words), as whole kopecks; entries that do not read as prices are left out."""
    found: dict[str, ChargedPrice] = {}
    models = pricing.get("models")
    for entry in models if isinstance(models, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            continue
        try:
            price = ChargedPrice(
                round(float(entry["input_price_per_1k_rubles"]) * 100),
                round(float(entry["output_price_per_1k_rubles"]) * 100),
                int(entry.get("thinking_surcharge_percent") or 0),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if min(price.input_kopecks_per_1k, price.output_kopecks_per_1k) >= 0:
            found[entry["model"]] = price
    return found
