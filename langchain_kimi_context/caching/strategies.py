"""Cache strategies without server-side state: off and automatic prefix caching.

Contract: a strategy has ``prepare(payload, *, session_id)`` (before sending; returns a
new payload, never mutates its input) and ``record(payload, response, *, session_id)``
(after the response; returns the ``kimi_cache`` metadata and feeds the
:class:`~langchain_kimi_context.caching.ledger.CostLedger`). :class:`NoContextCache`
only canonicalises and accounts; :class:`AutomaticPrefixCache` adds a stable
``prompt_cache_key`` and runs the prefix-stability checker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_kimi_context.caching.canonical import (
    canonicalize_payload,
    prefix_fingerprint,
    prompt_cache_key_for,
    read_cached_tokens,
    stable_prefix_length,
)
from langchain_kimi_context.caching.ledger import CallCost, CostLedger, _usage_of
from langchain_kimi_context.caching.policy import CachePolicy
from langchain_kimi_context.caching.stability import PrefixStabilityChecker
from langchain_kimi_context.profiles import (
    KimiModelProfile,
    Pricing,
)
from langchain_kimi_context.thinking_rules import web_search_echoes


class _BaseStrategy:
    cache_mode = "off"

    def __init__(
        self,
        *,
        profile: KimiModelProfile | None = None,
        policy: CachePolicy | None = None,
        ledger: CostLedger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.policy = policy or CachePolicy()
        self.ledger = ledger if ledger is not None else CostLedger()
        self.clock = clock

    def _pricing(self, model: str) -> Pricing | None:
        if self.profile is not None:
            return self.profile.pricing
        from langchain_kimi_context.profiles import get_profile

        return get_profile(model).pricing if model else None

    def _call_cost(
        self,
        payload: Mapping[str, Any],
        response: Any,
        session_id: str | None,
        *,
        cache_cost: float = 0.0,
        cache_currency: str | None = None,
        cache_id: str | None = None,
        cached_billed_by_cache: bool = False,
    ) -> CallCost:
        usage = _usage_of(response)
        prompt = int(usage.get("prompt_tokens") or 0)
        output = int(usage.get("completion_tokens") or 0)
        cached = min(read_cached_tokens(usage), prompt)
        model = str(payload.get("model") or (self.profile.name if self.profile else ""))
        pricing = self._pricing(model)
        cost = 0.0
        currency = pricing.currency if pricing else "USD"
        if pricing is not None:
            if cached_billed_by_cache:
                cost = pricing.cost(
                    prompt_tokens=prompt - cached, cached_tokens=0, output_tokens=output
                )
            else:
                cost = pricing.cost(
                    prompt_tokens=prompt, cached_tokens=cached, output_tokens=output
                )
        searches = web_search_echoes(payload.get("messages"))
        if pricing is not None and searches:
            cost += searches * pricing.web_search_call
        return CallCost(
            session_id=session_id,
            model=model,
            cache_mode=self.cache_mode,
            prompt_tokens=prompt,
            cached_tokens=cached,
            output_tokens=output,
            cost=cost,
            currency=currency,
            cache_cost=cache_cost,
            cache_currency=cache_currency,
            cache_id=cache_id,
            timestamp=self.clock(),
            web_search_calls=searches,
        )

    def record(
        self, payload: Mapping[str, Any], usage: Any, *, session_id: str | None
    ) -> dict[str, Any]:
        """Record a response's usage in the ledger.

        Args:
            payload: The request body that was sent.
            usage: The response's ``usage`` dict (the whole response dict and LangChain
                ``usage_metadata`` are understood too; ``None`` if the server sent none).
            session_id: The session.

        Returns:
            ``{"kimi_cache": {...}}`` with the call's tokens and cost, merged into the
            message's ``response_metadata``.
        """
        call = self._call_cost(payload, usage, session_id)
        self.ledger.add_call(call)
        return {"kimi_cache": call.to_dict()}

    def close(self) -> None:
        """Release resources (nothing to release for this strategy)."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class NoContextCache(_BaseStrategy):
    """``context_cache="off"``: sends the payload unchanged; still records costs.

    No ``prompt_cache_key``, no explicit cache, no canonical rewrite. (The server may still
    apply its automatic prefix caching; the ledger reports whatever it bills.)

    Args:
        profile: The model's profile (for prices); looked up from the payload if ``None``.
        policy: Caching thresholds.
        ledger: Where calls are recorded (a new one if ``None``).
        clock: Time source.

    Example:
        >>> p = {"model": "kimi-k2.6", "messages": []}
        >>> NoContextCache().prepare(p, session_id="s") == p
        True
    """

    cache_mode = "off"

    def prepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return ``payload`` unchanged.

        Args:
            payload: The request body.
            session_id: Ignored.

        Returns:
            The same payload.
        """
        return payload

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Async :meth:`prepare`."""
        return payload


class AutomaticPrefixCache(_BaseStrategy):
    """Automatic prefix caching (kimi-k2 and later): stable prefix + ``prompt_cache_key``.

    ``prepare`` canonicalises tools and messages, sets ``prompt_cache_key`` (derived from
    the session id, or from the stable prefix's fingerprint when there is no session, and
    never overriding one the caller set) and runs the :class:`PrefixStabilityChecker`.
    ``record`` stores the server's ``cached_tokens`` as the call's cache reads. The key is
    a routing hint only: live reports show Kimi's cache identity is the content prefix
    (``prompt_cache_key`` does not partition it), so nothing here relies on the key; the
    byte-stable prefix is what earns hits.

    Args:
        profile: The model's profile (for prices).
        policy: Caching thresholds and switches.
        ledger: Where calls are recorded.
        checker: The stability checker (a new one, enabled per ``policy``, if ``None``).
        clock: Time source.

    Example:
        >>> cache = AutomaticPrefixCache()
        >>> out = cache.prepare({"messages": [{"role": "system", "content": "s"}]},
        ...                     session_id=None)
        >>> out["prompt_cache_key"].startswith("lkc-")
        True
    """

    cache_mode = "automatic"

    def __init__(
        self,
        *,
        profile: KimiModelProfile | None = None,
        policy: CachePolicy | None = None,
        ledger: CostLedger | None = None,
        checker: PrefixStabilityChecker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(profile=profile, policy=policy, ledger=ledger, clock=clock)
        self.checker = checker or PrefixStabilityChecker(
            enabled=self.policy.check_prefix_stability,
            max_sessions=self.policy.max_tracked_sessions,
        )

    def prepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Return the canonical payload with a ``prompt_cache_key``.

        Args:
            payload: The request body (not modified).
            session_id: The session / thread id.

        Returns:
            A new payload.
        """
        out = (
            canonicalize_payload(payload, sort_tools=self.policy.sort_tools)
            if self.policy.canonicalize
            else dict(payload)
        )
        if not out.get("prompt_cache_key"):
            key_source = session_id
            if key_source is None:
                messages = list(out.get("messages") or ())
                n = stable_prefix_length(messages)
                key_source = "prefix:" + prefix_fingerprint(messages[:n], out.get("tools"))
            out["prompt_cache_key"] = prompt_cache_key_for(
                key_source, prefix=self.policy.prompt_cache_key_prefix
            )
        self.checker.check(session_id or str(out["prompt_cache_key"]), out)
        return out

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Async :meth:`prepare` (no I/O, runs inline)."""
        return self.prepare(payload, session_id=session_id)
