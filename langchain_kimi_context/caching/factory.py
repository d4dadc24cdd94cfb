"""Pick the cache strategy for a ``context_cache`` mode and a model profile.

Contract: :func:`create_cache_strategy` maps ``"auto" | "explicit" | "off"`` and a
profile to a strategy (explicit only for ``cache_kind="explicit"`` profiles under
``"auto"``); :func:`make_cache_strategy` is the hook
:class:`~langchain_kimi_context.KimiChatModel` calls with itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_kimi_context.caching.explicit import ExplicitContextCache
from langchain_kimi_context.caching.ledger import CostLedger
from langchain_kimi_context.caching.policy import CacheMode, CachePolicy
from langchain_kimi_context.caching.registry import CacheRegistry
from langchain_kimi_context.caching.strategies import AutomaticPrefixCache, NoContextCache
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.profiles import KimiModelProfile


def create_cache_strategy(
    mode: CacheMode,
    *,
    profile: KimiModelProfile,
    base_url: str | None = None,
    api_key: str | None = None,
    policy: CachePolicy | None = None,
    registry: CacheRegistry | None = None,
    ledger: CostLedger | None = None,
    clock: Callable[[], float] = time.time,
    headers: Mapping[str, str] | None = None,
) -> NoContextCache | AutomaticPrefixCache | ExplicitContextCache:
    """Pick the caching strategy for ``context_cache=mode`` and a model profile.

    ``"auto"`` uses the explicit cache API when the profile's ``cache_kind`` is
    ``"explicit"`` (moonshot-v1) and automatic prefix caching otherwise (``"none"`` models
    get no caching); ``"explicit"`` forces the explicit API; ``"off"`` disables caching
    (costs are still recorded).

    Args:
        mode: ``"auto"``, ``"explicit"`` or ``"off"``.
        profile: The model's profile.
        base_url: API base URL (required for the explicit API).
        api_key: API key (explicit API only).
        policy: Caching thresholds.
        registry: Shared registry of explicit caches.
        ledger: Shared cost ledger.
        clock: Time source.
        headers: Extra headers for cache-API calls.

    Returns:
        The strategy.

    Raises:
        KimiConfigurationError: For an unknown mode, or the explicit API without a base URL.

    Example:
        >>> from langchain_kimi_context.profiles import get_profile
        >>> type(create_cache_strategy("auto", profile=get_profile("kimi-k2.6"))).__name__
        'AutomaticPrefixCache'
        >>> type(create_cache_strategy("auto", profile=get_profile("moonshot-v1-8k"),
        ...      base_url="http://127.0.0.1:9/v1")).__name__
        'ExplicitContextCache'
        >>> create_cache_strategy("on", profile=get_profile("kimi-k2.6"))
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiConfigurationError: context_cache must be 'auto', 'explicit' or 'off' (got 'on').
    """  # noqa: E501
    if mode not in ("auto", "explicit", "off"):
        msg = f"context_cache must be 'auto', 'explicit' or 'off' (got {mode!r})."
        raise KimiConfigurationError(msg)
    use_explicit = mode == "explicit" or (mode == "auto" and profile.cache_kind == "explicit")
    if use_explicit:
        if not base_url:
            msg = "context_cache='explicit' needs the API base URL (base_url=...)."
            raise KimiConfigurationError(msg)
        return ExplicitContextCache(
            base_url=base_url,
            api_key=api_key,
            profile=profile,
            policy=policy,
            registry=registry,
            ledger=ledger,
            clock=clock,
            headers=headers,
        )
    if mode == "off" or profile.cache_kind == "none":
        return NoContextCache(profile=profile, policy=policy, ledger=ledger, clock=clock)
    return AutomaticPrefixCache(profile=profile, policy=policy, ledger=ledger, clock=clock)


def make_cache_strategy(model: Any) -> NoContextCache | AutomaticPrefixCache | ExplicitContextCache:
    """Build the cache strategy of a :class:`~langchain_kimi_context.KimiChatModel`.

    Called by the model when it is created. Reads ``context_cache``, the model profile,
    the base URL, API key and default headers, and the optional ``cache_policy``,
    ``cache_registry`` and ``cost_ledger`` fields.

    Args:
        model: The chat model.

    Returns:
        The strategy (see :func:`create_cache_strategy`).
    """
    profile = getattr(model, "model_profile", None)
    if not isinstance(profile, KimiModelProfile):
        from langchain_kimi_context.profiles import get_profile

        profile = get_profile(str(getattr(model, "model_name", "") or ""))
    secret: Any = getattr(model, "openai_api_key", None)
    api_key = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    if callable(api_key):
        api_key = api_key()
    headers = getattr(model, "default_headers", None)
    return create_cache_strategy(
        getattr(model, "context_cache", "auto"),
        profile=profile,
        base_url=getattr(model, "openai_api_base", None),
        api_key=api_key if isinstance(api_key, str) else None,
        policy=getattr(model, "cache_policy", None),
        registry=getattr(model, "cache_registry", None),
        ledger=getattr(model, "cost_ledger", None),
        headers=dict(headers) if isinstance(headers, Mapping) else None,
    )
