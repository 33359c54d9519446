"""What LLM tokens cost, in integer micro-dollars per million tokens.

Prices are list prices per million tokens (USD x 1,000,000). ``echo-1`` is the offline test
provider; it has a small nonzero price so budgets and cost accounting are exercised by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from runkernel.domain.skills import Usage
from runkernel.errors import PlanValidationError

TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_micros_per_mtok: int
    output_micros_per_mtok: int


DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType(
    {
        "echo-1": ModelPrice(1_000_000, 2_000_000),
        "gpt-4o": ModelPrice(2_500_000, 10_000_000),
        "gpt-4o-mini": ModelPrice(150_000, 600_000),
        "gpt-4.1": ModelPrice(2_000_000, 8_000_000),
        "gpt-4.1-mini": ModelPrice(400_000, 1_600_000),
        "gpt-4.1-nano": ModelPrice(100_000, 400_000),
        "o4-mini": ModelPrice(1_100_000, 4_400_000),
        "gpt-3.5-turbo": ModelPrice(500_000, 1_500_000),
    }
)


def known_models(prices: Mapping[str, ModelPrice] = DEFAULT_PRICES) -> list[str]:
    return sorted(prices)


def price_of(model: str, prices: Mapping[str, ModelPrice] = DEFAULT_PRICES) -> ModelPrice:
    """The price of ``model``; an unknown model is a plan error, since its cost is unknowable
    and a budget could not be enforced for it."""
    try:
        return prices[model]
    except KeyError:
        known = ", ".join(known_models(prices))
        raise PlanValidationError(f"unknown model {model!r}; known: {known}") from None


def cost_micros(model: str, usage: Usage, prices: Mapping[str, ModelPrice] = DEFAULT_PRICES) -> int:
    """Cost of ``usage`` on ``model`` in micro-dollars, rounded half up, integers only."""
    price = price_of(model, prices)
    scaled = (
        usage.input_tokens * price.input_micros_per_mtok
        + usage.output_tokens * price.output_micros_per_mtok
    )
    return (scaled + TOKENS_PER_MTOK // 2) // TOKENS_PER_MTOK


# A token is about four characters of English; echo-1 counts one per word. The larger of
# the two bounds what echo-1 charges exactly and what a real model is likely to.
CHARS_PER_TOKEN = 4


def estimated_input_tokens(texts: Iterable[str]) -> int:
    """What the prompt of ``texts`` is reserved as: per text, the larger of its word count
    and its characters / 4 (rounded up)."""
    return sum(max(len(t.split()), -(-len(t) // CHARS_PER_TOKEN)) for t in texts)


def worst_case_micros(
    model: str,
    texts: Iterable[str],
    max_tokens: int,
    prices: Mapping[str, ModelPrice] = DEFAULT_PRICES,
) -> int:
    """The most one call may cost: the estimated prompt plus ``max_tokens`` of answer."""
    usage = Usage(input_tokens=estimated_input_tokens(texts), output_tokens=max_tokens)
    return cost_micros(model, usage, prices)
