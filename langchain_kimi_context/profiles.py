"""Kimi model profiles as data: windows, output limits, prices, cache kind, thinking.

Every number here is data that users can override (``register_profile`` or the
``profile_overrides`` argument of :class:`~langchain_kimi_context.KimiChatModel`), and
windows can be refreshed from the server's ``GET /v1/models`` (``context_length``).
Nothing else in the package hard-codes a model name, a window or a price.

Sources: Moonshot's published pricing and model pages as summarised in the project's
reference notes (prices per 1M tokens).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

CacheKind = Literal["automatic", "explicit", "none"]
ThinkingMode = Literal["always", "default_on", "off"]

DEFAULT_MODEL = "kimi-k2.5"
"""The model used when none is given: a current kimi-k2 generation model."""

DEFAULT_CONTEXT_WINDOW = 262_144
"""Window assumed for a model that no profile and no server metadata describes."""


@dataclass(frozen=True, kw_only=True)
class Pricing:
    """Token prices per one million tokens.

    Attributes:
        currency: ISO currency code of every amount in this object.
        input_cache_hit: Price of a prompt token served from the context cache.
        input_cache_miss: Price of a prompt token not served from the cache.
        output: Price of a completion (including reasoning) token.

    Example:
        >>> p = Pricing(currency="USD", input_cache_hit=0.15, input_cache_miss=0.6, output=2.5)
        >>> round(p.cost(prompt_tokens=1_000_000, cached_tokens=500_000, output_tokens=0), 3)
        0.375
    """

    currency: str
    input_cache_hit: float
    input_cache_miss: float
    output: float

    def cost(self, *, prompt_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """Return the cost of one call.

        Args:
            prompt_tokens: All prompt tokens of the call (hits and misses).
            cached_tokens: The prompt tokens served from the cache.
            output_tokens: Completion tokens, reasoning included.

        Returns:
            The cost in ``currency``.

        Example:
            >>> Pricing(currency="USD", input_cache_hit=1, input_cache_miss=4, output=16).cost(
            ...     prompt_tokens=2_000_000, cached_tokens=0, output_tokens=0)
            8.0
        """
        cached = max(0, min(cached_tokens, prompt_tokens))
        missed = prompt_tokens - cached
        return (
            cached * self.input_cache_hit
            + missed * self.input_cache_miss
            + output_tokens * self.output
        ) / 1_000_000


@dataclass(frozen=True, kw_only=True)
class ExplicitCachePricing:
    """Prices of Moonshot's explicit Context Caching API (moonshot-v1 models).

    Attributes:
        currency: ISO currency code of every amount in this object.
        creation_per_m: Price per one million tokens put into a new cache.
        storage_per_m_per_minute: Price per one million cached tokens per minute stored.
        per_hit_call: Price of each request that uses the cache.

    Example:
        >>> ExplicitCachePricing().creation_per_m
        24.0
    """

    currency: str = "CNY"
    creation_per_m: float = 24.0
    storage_per_m_per_minute: float = 5.0
    per_hit_call: float = 0.02


@dataclass(frozen=True, kw_only=True)
class KimiModelProfile:
    """Everything the package needs to know about one Kimi model.

    Attributes:
        name: The model id sent as ``model`` in requests.
        context_window: Input + output token limit of the model.
        max_output_tokens: Largest ``max_tokens`` the model accepts.
        default_max_tokens: ``max_tokens`` sent when the caller sets none (the server's
            own default is small, about 1024).
        pricing: Token prices.
        cache_kind: ``"automatic"`` prefix caching (kimi-k2+), ``"explicit"`` Context
            Caching API (moonshot-v1), or ``"none"``.
        cache_family: Model family name the explicit cache API expects (``"moonshot-v1"``).
        explicit_cache_pricing: Prices of the explicit cache API, when it applies.
        thinking: ``"always"`` (thinking models), ``"default_on"`` (thinking unless
            disabled with ``extra_body={"thinking": {"type": "disabled"}}``) or ``"off"``.
        default_temperature: The server's default temperature for the model.
        fixed_params: Sampling parameters the model fixes; other values are rejected.
        fixed_params_thinking_off: The fixed values when thinking is disabled on a
            ``"default_on"`` model (k2.5/k2.6 fix temperature 0.6 instead of 1.0); empty
            means the same as ``fixed_params``.
        supports_tool_calling: Whether the model accepts ``tools``.
        source: Where the numbers came from (``"builtin"``, ``"user"``, ``"/v1/models"``).

    Example:
        >>> p = get_profile("kimi-k2-0905-preview")
        >>> p.context_window, p.cache_kind
        (262144, 'automatic')
    """

    name: str
    context_window: int
    max_output_tokens: int = 32_768
    default_max_tokens: int = 8_192
    pricing: Pricing
    cache_kind: CacheKind = "automatic"
    cache_family: str | None = None
    explicit_cache_pricing: ExplicitCachePricing | None = None
    thinking: ThinkingMode = "off"
    default_temperature: float = 0.6
    fixed_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    fixed_params_thinking_off: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({})
    )
    supports_tool_calling: bool = True
    source: str = "builtin"

    def fixed_params_for(self, *, thinking: bool) -> Mapping[str, Any]:
        """Return the sampling parameters the model fixes with thinking on or off.

        Args:
            thinking: Whether the request runs with thinking enabled.

        Returns:
            Parameter name -> the only accepted value.

        Example:
            >>> p = get_profile("kimi-k2.5")
            >>> p.fixed_params_for(thinking=True)["temperature"]
            1.0
            >>> p.fixed_params_for(thinking=False)["temperature"]
            0.6
        """
        if not thinking and self.fixed_params_thinking_off:
            return self.fixed_params_thinking_off
        return self.fixed_params

    def replace(self, **changes: Any) -> KimiModelProfile:
        """Return a copy with ``changes`` applied.

        Args:
            **changes: Field names and their new values.

        Returns:
            The new profile.

        Example:
            >>> get_profile("kimi-k2.5").replace(context_window=131_072).context_window
            131072
        """
        return dataclasses.replace(self, **changes)

    def to_langchain_profile(self) -> dict[str, Any]:
        """Return the profile as LangChain's ``ModelProfile`` dict (``model.profile``).

        ``max_input_tokens`` is what LangChain's own middleware (e.g.
        ``SummarizationMiddleware`` with a ``("fraction", f)`` trigger) reads.

        Returns:
            A dict with ``max_input_tokens``, ``max_output_tokens``, ``tool_calling``,
            ``reasoning_output`` and the Kimi-specific extras.

        Example:
            >>> get_profile("kimi-k2.5").to_langchain_profile()["max_input_tokens"]
            262144
        """
        return {
            "name": self.name,
            "max_input_tokens": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "text_inputs": True,
            "text_outputs": True,
            "tool_calling": self.supports_tool_calling,
            "reasoning_output": self.thinking != "off",
            "kimi_cache_kind": self.cache_kind,
        }


_K2_CLASSIC = Pricing(currency="USD", input_cache_hit=0.15, input_cache_miss=0.60, output=2.50)
_K2_TURBO = Pricing(currency="USD", input_cache_hit=0.15, input_cache_miss=1.15, output=8.00)
_FIXED_K25 = MappingProxyType({"temperature": 1.0, "top_p": 0.95, "n": 1})
_FIXED_K25_NO_THINKING = MappingProxyType({"temperature": 0.6, "top_p": 0.95, "n": 1})


def _v1(name: str, window: int, price_in: float, price_out: float) -> KimiModelProfile:
    return KimiModelProfile(
        name=name,
        context_window=window,
        max_output_tokens=min(window // 2, 16_384),
        default_max_tokens=min(window // 4, 4_096),
        pricing=Pricing(
            currency="USD",
            input_cache_hit=price_in,
            input_cache_miss=price_in,
            output=price_out,
        ),
        cache_kind="explicit",
        cache_family="moonshot-v1",
        explicit_cache_pricing=ExplicitCachePricing(),
        default_temperature=0.0,
    )


BUILTIN_PROFILES: Mapping[str, KimiModelProfile] = MappingProxyType(
    {
        p.name: p
        for p in (
            KimiModelProfile(
                name="kimi-k2-0905-preview", context_window=262_144, pricing=_K2_CLASSIC
            ),
            KimiModelProfile(
                name="kimi-k2-0711-preview", context_window=131_072, pricing=_K2_CLASSIC
            ),
            KimiModelProfile(
                name="kimi-k2-turbo-preview", context_window=262_144, pricing=_K2_TURBO
            ),
            KimiModelProfile(
                name="kimi-k2-thinking",
                context_window=262_144,
                pricing=_K2_CLASSIC,
                thinking="always",
                default_temperature=1.0,
            ),
            KimiModelProfile(
                name="kimi-k2-thinking-turbo",
                context_window=262_144,
                pricing=_K2_TURBO,
                thinking="always",
                default_temperature=1.0,
            ),
            KimiModelProfile(
                name="kimi-k2.5",
                context_window=262_144,
                pricing=Pricing(
                    currency="USD", input_cache_hit=0.10, input_cache_miss=0.60, output=3.00
                ),
                thinking="default_on",
                default_temperature=1.0,
                fixed_params=_FIXED_K25,
                fixed_params_thinking_off=_FIXED_K25_NO_THINKING,
            ),
            KimiModelProfile(
                name="kimi-k2.6",
                context_window=262_144,
                pricing=Pricing(
                    currency="USD", input_cache_hit=0.16, input_cache_miss=0.95, output=4.00
                ),
                thinking="default_on",
                default_temperature=1.0,
                fixed_params=_FIXED_K25,
                fixed_params_thinking_off=_FIXED_K25_NO_THINKING,
            ),
            KimiModelProfile(
                name="kimi-k3",
                context_window=1_048_576,
                max_output_tokens=65_536,
                pricing=Pricing(
                    currency="USD", input_cache_hit=0.30, input_cache_miss=3.00, output=15.00
                ),
                thinking="default_on",
                default_temperature=1.0,
            ),
            _v1("moonshot-v1-8k", 8_192, 0.20, 2.00),
            _v1("moonshot-v1-32k", 32_768, 1.00, 3.00),
            _v1("moonshot-v1-128k", 131_072, 2.00, 5.00),
        )
    }
)

_lock = threading.Lock()
_registry: dict[str, KimiModelProfile] = dict(BUILTIN_PROFILES)


def register_profile(profile: KimiModelProfile) -> None:
    """Add or replace a model profile for the whole process.

    Args:
        profile: The profile; ``profile.name`` is the model id it applies to.

    Example:
        >>> register_profile(get_profile("kimi-k2.5").replace(name="my-kimi", source="user"))
        >>> get_profile("my-kimi").context_window
        262144
    """
    with _lock:
        _registry[profile.name] = profile


def list_profiles() -> list[str]:
    """Return the model ids that have a profile.

    Returns:
        Sorted model ids.

    Example:
        >>> "kimi-k2.5" in list_profiles()
        True
    """
    with _lock:
        return sorted(_registry)


def _fallback_profile(model: str) -> KimiModelProfile:
    """Guess a profile for an unknown model from its family prefix."""
    with _lock:
        known = sorted(_registry.values(), key=lambda p: len(p.name), reverse=True)
    for candidate in known:
        family = candidate.name.rsplit("-", 1)[0] if candidate.name.count("-") > 1 else ""
        if family and model.startswith(family):
            return candidate.replace(name=model, source=f"guessed from {candidate.name}")
    return KimiModelProfile(
        name=model,
        context_window=DEFAULT_CONTEXT_WINDOW,
        pricing=_K2_CLASSIC,
        source="default",
    )


def get_profile(model: str, overrides: Mapping[str, Any] | None = None) -> KimiModelProfile:
    """Return the profile of ``model``, with optional per-call overrides.

    Unknown models get a profile guessed from the closest known family (or the package
    defaults); ``source`` says which.

    Args:
        model: Model id, e.g. ``"kimi-k2-0905-preview"``.
        overrides: Field values that replace the stored ones (e.g.
            ``{"context_window": 131072}``).

    Returns:
        The profile.

    Raises:
        TypeError: If ``overrides`` names a field that profiles do not have.

    Example:
        >>> get_profile("moonshot-v1-32k").cache_kind
        'explicit'
        >>> get_profile("kimi-k2.5", {"context_window": 100_000}).context_window
        100000
    """
    with _lock:
        profile = _registry.get(model)
    if profile is None:
        profile = _fallback_profile(model)
    if overrides:
        fields = {f.name for f in dataclasses.fields(KimiModelProfile)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            msg = f"Unknown model profile field(s) {unknown}; valid fields are {sorted(fields)}."
            raise TypeError(msg)
        profile = profile.replace(**dict(overrides), source="user")
    return profile


def update_profiles_from_models_payload(
    payload: Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> list[KimiModelProfile]:
    """Refresh context windows from a ``GET /v1/models`` response body.

    Models the server lists but the package does not know get a profile guessed from
    their family with the server's ``context_length``.

    Args:
        payload: The decoded JSON body (``{"data": [...]}``) or its ``data`` list.

    Returns:
        The profiles that were registered or updated.

    Example:
        >>> body = {"data": [{"id": "kimi-k2.6", "context_length": 262144}]}
        >>> [p.source for p in update_profiles_from_models_payload(body)]
        ['/v1/models']
    """
    items = payload.get("data", []) if isinstance(payload, Mapping) else payload
    updated: list[KimiModelProfile] = []
    for item in items:
        model_id = item.get("id")
        window = item.get("context_length")
        if not isinstance(model_id, str) or not isinstance(window, int) or window <= 0:
            continue
        profile = get_profile(model_id).replace(context_window=window, source="/v1/models")
        register_profile(profile)
        updated.append(profile)
    return updated
