"""The cost of a thread's cumulative usage: one rule for the memory and the CLI."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from langchain_kimi_context.profiles import Pricing
from langchain_kimi_context.usage import CALL_COST_KEY, add_usage, usage_cost

PRICES = Pricing(currency="USD", input_cache_hit=1, input_cache_miss=4, output=16)


def _reply(cost: float | None) -> AIMessage:
    meta = {CALL_COST_KEY: {"cost": cost}} if cost is not None else {}
    return AIMessage(
        "ok",
        usage_metadata={"input_tokens": 1_000_000, "output_tokens": 0, "total_tokens": 1_000_000},
        response_metadata=meta,
    )


def test_every_call_costed_uses_the_ledger_sum() -> None:
    usage = add_usage(add_usage({}, _reply(0.5)), _reply(0.25))
    assert usage["costed_calls"] == usage["calls"] == 2
    assert usage_cost(usage, PRICES) == 0.75  # the ledger, not 2M tokens at 4/M = 8.0


def test_a_partly_costed_thread_is_priced_from_its_tokens() -> None:
    usage = add_usage(add_usage({}, _reply(0.5)), _reply(None))
    assert usage["costed_calls"] == 1
    assert usage["calls"] == 2
    assert usage_cost(usage, PRICES) == 8.0  # 2M missed prompt tokens at 4 per million


def test_no_calls_cost_nothing() -> None:
    assert usage_cost({}, PRICES) == 0.0
