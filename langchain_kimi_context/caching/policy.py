"""Explicit-cache policy: the headers, the ``context_cache`` modes and the cost guard.

Contract: :class:`CachePolicy` holds every threshold the cache strategies use (TTL, the
cost rule, the usage mode); :func:`explicit_cache_decision` says, from a policy, a profile
and a prefix size, whether creating an explicit cache pays for itself. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.profiles import (
    ExplicitCachePricing,
    Pricing,
)

CACHE_HEADER = "X-Msh-Context-Cache"
"""Header naming the explicit cache a request uses."""

CACHE_RESET_TTL_HEADER = "X-Msh-Context-Cache-Reset-TTL"
"""Header asking the server to reset the explicit cache's TTL to N seconds."""

CacheMode = Literal["auto", "explicit", "off"]
"""The ``context_cache`` setting of :class:`~langchain_kimi_context.KimiChatModel`."""


def _frozen_rates(value: Mapping[str, float] | None = None) -> Mapping[str, float]:
    return MappingProxyType(dict(value or {"USD": 1.0, "CNY": 0.14}))


@dataclass(frozen=True, kw_only=True)
class CachePolicy:
    """Every threshold of the caching layer, in one frozen object.

    The explicit-cache cost rule (see :func:`explicit_cache_decision`): create a cache for
    a prefix of ``T`` tokens only if ``T >= min_prefix_tokens`` and::

        expected_hits * (T * input_miss_price - per_hit_fee)
            >= T * (creation_price + storage_price_per_minute * expected_lifetime_minutes)

    with every amount converted to USD through ``usd_per_unit`` (prices per token).

    Attributes:
        ttl_seconds: TTL of a new explicit cache (``ttl`` of ``POST /v1/caching``).
        reset_ttl_seconds: Value of ``X-Msh-Context-Cache-Reset-TTL`` (``None`` = ``ttl``;
            ``0`` = do not send the header).
        explicit_usage: ``"header"`` (send the prefix plus ``X-Msh-Context-Cache``) or
            ``"message"`` (replace the prefix and tools by a ``role: "cache"`` message).
        cost_guard: Apply the cost rule above (``False`` = always create).
        min_prefix_tokens: Never cache a prefix smaller than this.
        expected_hits: Calls per session assumed to use the cache.
        expected_lifetime_minutes: Minutes a cache is assumed to live (storage is billed
            per minute until it is deleted or expires).
        usd_per_unit: Exchange rates to USD of the currencies in the price tables.
        verify_after_seconds: Re-check a cache with ``GET /v1/caching/{id}`` when it was
            not confirmed for this long (it may have been deleted elsewhere).
        expiry_margin_seconds: Treat a cache as expired this long before its expiry.
        create_retry_after_seconds: After a failed create, wait this long before retrying
            (requests go out uncached meanwhile).
        http_timeout_seconds: Timeout of each cache-API call.
        canonicalize: Rewrite outgoing tools and messages canonically.
        sort_tools: Sort tools by name as part of the canonical form.
        check_prefix_stability: Run the :class:`PrefixStabilityChecker` on every call and
            log breaks at WARNING (otherwise it runs only when its logger is at DEBUG).
        prompt_cache_key_prefix: Prefix of derived ``prompt_cache_key`` values.
        max_tracked_sessions: Sessions whose last request the stability checker keeps.

    Example:
        >>> CachePolicy().ttl_seconds, CachePolicy(explicit_usage="message").explicit_usage
        (3600, 'message')
        >>> CachePolicy(ttl_seconds=0)
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiConfigurationError: Invalid CachePolicy: ttl_seconds must be > 0 (got 0)
    """  # noqa: E501

    ttl_seconds: int = 3600
    reset_ttl_seconds: int | None = None
    explicit_usage: Literal["header", "message"] = "header"
    cost_guard: bool = True
    min_prefix_tokens: int = 1024
    expected_hits: int = 20
    expected_lifetime_minutes: float = 10.0
    usd_per_unit: Mapping[str, float] = field(default_factory=_frozen_rates)
    verify_after_seconds: float = 300.0
    expiry_margin_seconds: float = 5.0
    create_retry_after_seconds: float = 30.0
    http_timeout_seconds: float = 10.0
    canonicalize: bool = True
    sort_tools: bool = True
    check_prefix_stability: bool = False
    prompt_cache_key_prefix: str = "lkc-"
    max_tracked_sessions: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.usd_per_unit, MappingProxyType):
            object.__setattr__(self, "usd_per_unit", _frozen_rates(self.usd_per_unit))
        problems: list[str] = []
        if self.ttl_seconds <= 0:
            problems.append(f"ttl_seconds must be > 0 (got {self.ttl_seconds})")
        if self.reset_ttl_seconds is not None and self.reset_ttl_seconds < 0:
            problems.append(f"reset_ttl_seconds must be >= 0 (got {self.reset_ttl_seconds})")
        if self.explicit_usage not in ("header", "message"):
            problems.append(
                f"explicit_usage must be 'header' or 'message' (got {self.explicit_usage!r})"
            )
        for name in ("min_prefix_tokens", "expected_hits", "max_tracked_sessions"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in (
            "expected_lifetime_minutes",
            "verify_after_seconds",
            "expiry_margin_seconds",
            "create_retry_after_seconds",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.http_timeout_seconds <= 0:
            problems.append("http_timeout_seconds must be > 0")
        if any(rate <= 0 for rate in self.usd_per_unit.values()):
            problems.append("usd_per_unit rates must be > 0")
        if problems:
            raise KimiConfigurationError("Invalid CachePolicy: " + "; ".join(problems))

    @property
    def effective_reset_ttl(self) -> int:
        """The TTL sent in ``X-Msh-Context-Cache-Reset-TTL`` (0 = header not sent)."""
        return self.ttl_seconds if self.reset_ttl_seconds is None else self.reset_ttl_seconds

    def to_usd(self, amount: float, currency: str) -> float:
        """Convert ``amount`` of ``currency`` to USD with ``usd_per_unit``.

        Args:
            amount: The amount.
            currency: ISO code (must be in ``usd_per_unit``).

        Returns:
            The amount in USD.

        Raises:
            KimiConfigurationError: If the currency has no rate.
        """
        if currency == "USD":
            return float(amount)
        rate = self.usd_per_unit.get(currency)
        if rate is None:
            msg = (
                f"No exchange rate for currency {currency!r}; add it to "
                f"CachePolicy(usd_per_unit={{...}})."
            )
            raise KimiConfigurationError(msg)
        return amount * rate


@dataclass(frozen=True, kw_only=True)
class CacheDecision:
    """Whether creating an explicit cache pays for itself, and the numbers behind it.

    Attributes:
        create: The verdict.
        reason: Why.
        prefix_tokens: Tokens of the prefix.
        expected_savings_usd: Savings over ``expected_hits`` calls.
        expected_cost_usd: Creation plus storage over ``expected_lifetime_minutes``.

    Example:
        >>> CacheDecision(create=False, reason="r", prefix_tokens=0,
        ...               expected_savings_usd=0.0, expected_cost_usd=0.0).create
        False
    """

    create: bool
    reason: str
    prefix_tokens: int
    expected_savings_usd: float
    expected_cost_usd: float


def explicit_cache_decision(
    prefix_tokens: int,
    *,
    pricing: Pricing,
    cache_pricing: ExplicitCachePricing,
    policy: CachePolicy | None = None,
) -> CacheDecision:
    """Apply the explicit-cache cost rule of :class:`CachePolicy` to a prefix.

    Savings per hit: the prefix is not billed at the input (miss) price, minus the
    per-hit fee. Cost: creation per token plus storage per token-minute over the expected
    lifetime. Create iff the prefix is at least ``min_prefix_tokens`` and
    ``expected_hits`` hits save at least the cost (or the guard is off).

    Args:
        prefix_tokens: Tokens of the stable prefix.
        pricing: The model's token prices.
        cache_pricing: The explicit cache API's prices.
        policy: Thresholds (defaults if ``None``).

    Returns:
        The decision with its numbers.

    Example:
        >>> from langchain_kimi_context.profiles import get_profile
        >>> p = get_profile("moonshot-v1-128k")
        >>> explicit_cache_decision(20_000, pricing=p.pricing,
        ...                         cache_pricing=p.explicit_cache_pricing).create
        True
        >>> explicit_cache_decision(500, pricing=p.pricing,
        ...                         cache_pricing=p.explicit_cache_pricing).reason
        'prefix of 500 tokens is below min_prefix_tokens=1024'
        >>> q = get_profile("moonshot-v1-8k")
        >>> explicit_cache_decision(20_000, pricing=q.pricing,
        ...                         cache_pricing=q.explicit_cache_pricing).create
        False
    """
    policy = policy or CachePolicy()
    per_token_miss = policy.to_usd(pricing.input_cache_miss, pricing.currency) / 1e6
    fee = policy.to_usd(cache_pricing.per_hit_call, cache_pricing.currency)
    creation = policy.to_usd(cache_pricing.creation_per_m, cache_pricing.currency) / 1e6
    storage = policy.to_usd(cache_pricing.storage_per_m_per_minute, cache_pricing.currency) / 1e6
    savings = policy.expected_hits * (prefix_tokens * per_token_miss - fee)
    cost = prefix_tokens * (creation + storage * policy.expected_lifetime_minutes)
    if prefix_tokens < policy.min_prefix_tokens:
        return CacheDecision(
            create=False,
            reason=(
                f"prefix of {prefix_tokens} tokens is below "
                f"min_prefix_tokens={policy.min_prefix_tokens}"
            ),
            prefix_tokens=prefix_tokens,
            expected_savings_usd=savings,
            expected_cost_usd=cost,
        )
    if not policy.cost_guard:
        return CacheDecision(
            create=True,
            reason="cost guard disabled",
            prefix_tokens=prefix_tokens,
            expected_savings_usd=savings,
            expected_cost_usd=cost,
        )
    create = savings >= cost
    verdict = "pays for itself" if create else "does not pay for itself"
    return CacheDecision(
        create=create,
        reason=(
            f"{verdict}: {policy.expected_hits} hits save ${savings:.6f}, creation + "
            f"{policy.expected_lifetime_minutes:g} min storage cost ${cost:.6f}"
        ),
        prefix_tokens=prefix_tokens,
        expected_savings_usd=savings,
        expected_cost_usd=cost,
    )
