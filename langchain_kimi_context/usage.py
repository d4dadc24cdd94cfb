"""Reading Moonshot ``usage`` and the per-call cost the package records.

- **Cached tokens**: Moonshot's own field is a top-level ``usage.cached_tokens``; some
  deployments send ``usage.prompt_tokens_details.cached_tokens`` instead. The top-level
  one wins (:func:`cached_tokens`).
- **usage -> usage_metadata**: LangChain's OpenAI conversion plus the Moonshot fields
  (cached tokens as ``input_token_details.cache_read``, reasoning tokens from
  ``completion_tokens_details`` or a top-level ``reasoning_tokens``)
  (:func:`usage_metadata`).
- **Cost of a call**: what the cache strategy's ledger charged, read from the reply's
  ``response_metadata["kimi_cache"]`` (token cost plus explicit-cache charges in the same
  currency) (:func:`call_cost`). Recomputing from token prices would miss explicit-cache
  hit fees (cached tokens of a hit are free, the hit itself is charged) and web-search
  fees.
- **Cost of a thread's usage**: the ledger's sum when every call was costed, else the
  tokens at the profile's prices (:func:`usage_cost`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from langchain_core.messages.ai import UsageMetadata
from langchain_openai.chat_models.base import _create_usage_metadata

if TYPE_CHECKING:
    from langchain_kimi_context.profiles import Pricing

__all__ = [
    "CALL_COST_KEY",
    "add_usage",
    "cached_tokens",
    "call_cost",
    "usage_cost",
    "usage_metadata",
]

CALL_COST_KEY = "kimi_cache"
"""The ``response_metadata`` key under which the chat model stores a call's ledger entry."""


def cached_tokens(usage: Mapping[str, Any] | None) -> int | None:
    """Return the prompt tokens served from the cache, or ``None`` when not reported.

    Args:
        usage: A Moonshot ``usage`` dict.

    Returns:
        The top-level ``cached_tokens``, else ``prompt_tokens_details.cached_tokens``.
    """
    if not usage:
        return None
    top = usage.get("cached_tokens")
    if isinstance(top, int | float) and not isinstance(top, bool):
        return int(top)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, Mapping):
        nested = details.get("cached_tokens")
        if isinstance(nested, int | float) and not isinstance(nested, bool):
            return int(nested)
    return None


def usage_metadata(usage: Mapping[str, Any]) -> UsageMetadata:
    """Return LangChain ``usage_metadata`` for a Moonshot ``usage`` dict.

    Args:
        usage: A Moonshot ``usage`` dict.

    Returns:
        The usage metadata, cached tokens as ``input_token_details.cache_read``.
    """
    meta = _create_usage_metadata(dict(usage))
    cached = cached_tokens(usage)
    input_details = dict(meta.get("input_token_details") or {})
    if cached is not None:
        input_details["cache_read"] = cached
    meta["input_token_details"] = cast(Any, input_details)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is None:
        reasoning = usage.get("reasoning_tokens")
    output_details = dict(meta.get("output_token_details") or {})
    if reasoning is not None:
        output_details["reasoning"] = int(reasoning)
    meta["output_token_details"] = cast(Any, output_details)
    return meta


def call_cost(response_metadata: Mapping[str, Any] | None) -> float | None:
    """Return what the ledger charged for one call, or ``None`` when it was not recorded.

    Args:
        response_metadata: A reply's ``response_metadata``.

    Returns:
        The call's token cost plus its explicit-cache charges when they are in the same
        currency (a charge in another currency is not added), or ``None``.
    """
    entry = (response_metadata or {}).get(CALL_COST_KEY)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("cost"), int | float):
        return None
    total = float(entry["cost"])
    extra = entry.get("cache_cost")
    if isinstance(extra, int | float) and entry.get("cache_currency") in (
        None,
        entry.get("currency"),
    ):
        total += float(extra)
    return total


def add_usage(usage: Mapping[str, Any], reply: Any) -> dict[str, Any]:
    """Return the thread's cumulative usage with one more model reply added.

    Tokens come from the reply's ``usage_metadata``, cost from the ledger entry
    (:func:`call_cost`); ``costed_calls`` counts the calls whose cost was recorded.

    Args:
        usage: The cumulative usage so far (``calls``, ``input_tokens``, ...).
        reply: The model's reply.

    Returns:
        A new dict.
    """
    out = dict(usage)
    out["calls"] = int(out.get("calls", 0)) + 1
    meta = getattr(reply, "usage_metadata", None) or {}
    out["input_tokens"] = int(out.get("input_tokens", 0)) + int(meta.get("input_tokens", 0))
    out["output_tokens"] = int(out.get("output_tokens", 0)) + int(meta.get("output_tokens", 0))
    cached = (meta.get("input_token_details") or {}).get("cache_read", 0) or 0
    out["cache_read_tokens"] = int(out.get("cache_read_tokens", 0)) + int(cached)
    cost = call_cost(getattr(reply, "response_metadata", None))
    if cost is not None:
        out["cost"] = round(float(out.get("cost", 0.0)) + cost, 8)
        out["costed_calls"] = int(out.get("costed_calls", 0)) + 1
    return out


def usage_cost(usage: Mapping[str, Any], pricing: Pricing) -> float:
    """Return the cost of a cumulative usage (as built by :func:`add_usage`).

    The ledger's sum is exact (explicit-cache and web-search fees included), so it is
    used when every call was costed; otherwise (replies from other models or older
    records) every token is priced at ``pricing``, the partial ledger sum being unusable.

    Args:
        usage: The cumulative usage (``calls``, ``costed_calls``, ``cost``, token counts).
        pricing: The prices of the thread's model.

    Returns:
        The cost in ``pricing.currency``.
    """
    if "cost" in usage and usage.get("costed_calls") == usage.get("calls"):
        return float(usage["cost"])
    return pricing.cost(
        prompt_tokens=int(usage.get("input_tokens", 0)),
        cached_tokens=int(usage.get("cache_read_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
    )
