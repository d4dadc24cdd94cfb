"""The price budget: the context size at which compacting is cheapest per model call.

Contract (pure, no I/O): from a model's prices and four sizes, return the trigger point
``T*`` (tokens of the view) that minimises the expected cost per model call of a long
session whose view grows, is compacted back to a floor, grows again, and so on.

Inputs (per token: ``h`` cache-hit price, ``m`` cache-miss price, ``o`` output price):

* ``g``, growth: tokens appended to the view per model call (tool results, replies);
* ``S``, floor: tokens the view returns to after a compaction (system prompt, tools,
  summary, the turns kept verbatim);
* ``w``, summary: output tokens of the summary call.

Cost model. Between two compactions the view grows from ``S`` to ``T`` in
``n = (T - S) / g`` calls. Each call re-reads the cached prefix at ``h`` and pays ``m``
for the ``g`` new tokens, so a call costs ``h·C + (m - h)·g`` on a view of ``C``
tokens, on average ``h·(S + T)/2 + (m - h)·g``. A compaction costs
``K(T) = h·T + o·w + (m - h)·S``: the summary call re-reads the conversation from the
cache (the cache-friendly request form), writes ``w`` tokens, and the next call reads the
new prefix ``S`` once at the miss price. Per call, with ``x = T - S``::

    f(T) = h·(S + T)/2 + (m - h)·g + g·K(T)/x
         = h·S + m·g + h·x/2 + g·(o·w + m·S)/x

which is the economic-order-quantity shape (holding cost ``h`` per token per call, order
cost ``o·w + m·S``), minimised at::

    x* = sqrt(2·g·(o·w + m·S) / h),      T* = S + x*

``T*`` rises with the miss and output prices and falls as the hit price rises; scaling
all prices by the same factor leaves it unchanged. The cost curve is flat near the
optimum: a trigger at ``x*·k`` costs ``(k + 1/k)/2`` times the optimal variable part, so
a growth estimate off by 2x costs 25% more on that part, not 2x.

The result is never above ``ceiling`` (the window rule: ratio/reserve thresholds stay
the hard limit). Without a cache-hit discount (``h >= m``, e.g. models served without
prefix caching or with an explicit cache whose storage fees this model does not
describe) there is no cached prefix to keep cheap and :func:`price_budget` returns
``None``: the window rule applies unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from langchain_kimi_context.profiles import Pricing

__all__ = ["PriceBudget", "expected_cost_per_call", "price_budget"]

_PER_TOKEN = 1_000_000


@dataclass(frozen=True)
class PriceBudget:
    """The cheapest trigger for a model's prices (see the module docstring).

    Attributes:
        trigger_tokens: Compact when the view reaches this many tokens (``<= ceiling``).
        floor_tokens: ``S``: the size a compaction returns to.
        interval_tokens: ``trigger_tokens - floor_tokens``.
        compaction_cost: ``o·w + m·S``: the fixed cost of one compaction (currency).
        cost_per_call: Expected input + summary cost per call at the trigger (currency).
        currency: Currency of the two costs.
        capped: The unconstrained optimum was above ``ceiling`` (the window rule wins).
    """

    trigger_tokens: int
    floor_tokens: int
    interval_tokens: int
    compaction_cost: float
    cost_per_call: float
    currency: str
    capped: bool


def _check(growth_tokens: int, floor_tokens: int, summary_tokens: int) -> None:
    if growth_tokens <= 0:
        msg = f"growth_tokens must be > 0 (got {growth_tokens})"
        raise ValueError(msg)
    if floor_tokens < 0 or summary_tokens < 0:
        msg = f"floor_tokens and summary_tokens must be >= 0 (got {floor_tokens}, {summary_tokens})"
        raise ValueError(msg)


def expected_cost_per_call(
    pricing: Pricing,
    trigger_tokens: int,
    *,
    growth_tokens: int,
    floor_tokens: int,
    summary_tokens: int,
) -> float:
    """``f(T)``: expected input + compaction cost per call when compacting at ``T``.

    Args:
        pricing: The model's prices (per one million tokens).
        trigger_tokens: ``T``; must be above ``floor_tokens``.
        growth_tokens: ``g``: tokens appended per call.
        floor_tokens: ``S``: size after a compaction.
        summary_tokens: ``w``: output tokens of the summary call.

    Returns:
        The cost per call in ``pricing.currency`` (the agent's own reply tokens excluded:
        they do not depend on the trigger).

    Raises:
        ValueError: If a size is out of range or ``trigger_tokens <= floor_tokens``.
    """
    _check(growth_tokens, floor_tokens, summary_tokens)
    if trigger_tokens <= floor_tokens:
        msg = f"trigger_tokens ({trigger_tokens}) must be above floor_tokens ({floor_tokens})"
        raise ValueError(msg)
    h = pricing.input_cache_hit / _PER_TOKEN
    m = pricing.input_cache_miss / _PER_TOKEN
    o = pricing.output / _PER_TOKEN
    x = trigger_tokens - floor_tokens
    g = growth_tokens
    return h * floor_tokens + m * g + h * x / 2 + g * (o * summary_tokens + m * floor_tokens) / x


def price_budget(
    pricing: Pricing,
    *,
    growth_tokens: int,
    floor_tokens: int,
    summary_tokens: int,
    ceiling: int,
) -> PriceBudget | None:
    """Return the cheapest trigger point ``T* = S + sqrt(2·g·(o·w + m·S) / h)``.

    Args:
        pricing: The model's prices (per one million tokens).
        growth_tokens: ``g``: tokens appended to the view per model call.
        floor_tokens: ``S``: the view's size right after a compaction.
        summary_tokens: ``w``: output tokens of the summary call.
        ceiling: The window rule's threshold; the budget is never above it.

    Returns:
        The budget, or ``None`` when the model has no cache-hit discount
        (``input_cache_hit >= input_cache_miss``): the window rule applies.

    Raises:
        ValueError: If a size is out of range.
    """
    _check(growth_tokens, floor_tokens, summary_tokens)
    if ceiling <= 0:
        msg = f"ceiling must be > 0 (got {ceiling})"
        raise ValueError(msg)
    h = pricing.input_cache_hit / _PER_TOKEN
    m = pricing.input_cache_miss / _PER_TOKEN
    o = pricing.output / _PER_TOKEN
    if h >= m:
        return None
    order_cost = o * summary_tokens + m * floor_tokens
    interval = math.inf if h <= 0 else math.sqrt(2 * growth_tokens * order_cost / h)
    optimum = floor_tokens + interval
    capped = optimum >= ceiling
    trigger = ceiling if capped else int(optimum)
    x = max(trigger - floor_tokens, 1)
    cost = h * floor_tokens + m * growth_tokens + h * x / 2 + growth_tokens * order_cost / x
    return PriceBudget(
        trigger_tokens=trigger,
        floor_tokens=floor_tokens,
        interval_tokens=trigger - floor_tokens,
        compaction_cost=order_cost,
        cost_per_call=cost,
        currency=pricing.currency,
        capped=capped,
    )
