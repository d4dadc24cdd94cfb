"""Explicit Context Caching (moonshot-v1): the ``/v1/caching`` client and its lifecycle.

Contract: :class:`ExplicitContextCache` creates a cache for a session's stable prefix
when the cost guard says it pays, marks matching requests with ``X-Msh-Context-Cache``
(or a ``role: "cache"`` message), recreates a cache the server reports gone, deletes
caches on ``close()`` / ``aclose()`` and, best effort, at interpreter exit. Any cache-API
failure is logged without secrets and the request goes out uncached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from langchain_core.messages import BaseMessage

from langchain_kimi_context.caching.canonical import (
    canonical_json,
    canonicalize_payload,
    prefix_fingerprint,
    prompt_cache_key_for,
    read_cached_tokens,
    stable_prefix_length,
)
from langchain_kimi_context.caching.ledger import CostLedger, _usage_of
from langchain_kimi_context.caching.policy import (
    CACHE_HEADER,
    CACHE_RESET_TTL_HEADER,
    CacheDecision,
    CachePolicy,
    explicit_cache_decision,
)
from langchain_kimi_context.caching.registry import (
    _LIVE_EXPLICIT,
    CacheEntry,
    CacheRegistry,
    InMemoryCacheRegistry,
    _register_atexit,
)
from langchain_kimi_context.caching.strategies import _BaseStrategy
from langchain_kimi_context.profiles import (
    ExplicitCachePricing,
    KimiModelProfile,
)
from langchain_kimi_context.tokens import default_token_counter

logger = logging.getLogger("langchain_kimi_context.caching")


_ALIVE_STATUSES = frozenset({"ready", "pending"})


class _CacheAPIError(Exception):
    """A cache-API call failed (logged, never raised to the caller of a chat call)."""

    def __init__(self, what: str, status: int | None, detail: str) -> None:
        super().__init__(f"{what} failed (status {status}): {detail}")
        self.status = status


class ExplicitContextCache(_BaseStrategy):
    """Explicit Context Caching (moonshot-v1): one server-side cache per session prefix.

    Per session: the first request creates a cache (``POST /v1/caching`` with the family
    model name and ``ttl``) for the stable prefix (leading system messages, a pinned
    ``summary``-marked message, the tools) when :func:`explicit_cache_decision` says it
    pays; each request whose prefix and tools have the cache's fingerprint gets
    ``X-Msh-Context-Cache`` + ``X-Msh-Context-Cache-Reset-TTL`` (or, with
    ``explicit_usage="message"``, a ``role: "cache"`` message in place of the prefix and
    no tools). A new prefix deletes the old cache and creates a new one; a cache that the
    server reports inactive, errored or missing is recreated; any cache-API error is
    logged without secrets and the request goes out uncached. ``close()`` deletes the
    session caches this instance holds (when no other holder still uses them).

    Args:
        base_url: The API base URL (``.../v1``).
        api_key: The API key (used only in the ``Authorization`` header).
        profile: The model's profile (``cache_family``, prices).
        policy: Thresholds (TTL, cost rule, usage mode...).
        registry: Where live caches are recorded (a private in-memory one if ``None``).
        ledger: Where calls and cache charges are recorded.
        clock: Time source (inject the emulator's clock in tests).
        holder_id: Identity of this instance in shared registries.
        headers: Extra HTTP headers for cache-API calls (e.g. from ``default_headers``).

    Example:
        >>> from langchain_kimi_context.profiles import get_profile
        >>> cache = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key="sk-x",
        ...                              profile=get_profile("moonshot-v1-8k"))
        >>> p = {"model": "moonshot-v1-8k", "messages": [{"role": "user", "content": "hi"}]}
        >>> cache.prepare(p, session_id="s") == p  # no stable prefix: nothing to cache
        True
        >>> cache.close()
    """

    cache_mode = "explicit"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        profile: KimiModelProfile,
        policy: CachePolicy | None = None,
        registry: CacheRegistry | None = None,
        ledger: CostLedger | None = None,
        clock: Callable[[], float] = time.time,
        holder_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(profile=profile, policy=policy, ledger=ledger, clock=clock)
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._extra_headers = dict(headers or {})
        self.registry: CacheRegistry = registry if registry is not None else InMemoryCacheRegistry()
        self.family = profile.cache_family or profile.name
        self.cache_pricing = profile.explicit_cache_pricing or ExplicitCachePricing()
        self.holder_id = holder_id or f"holder-{uuid.uuid4().hex}"
        self._held: dict[str, str] = {}  # registry key -> session id
        self._created: dict[str, CacheEntry] = {}  # registry key -> cache this instance made
        self._create_blocked_until: dict[str, float] = {}
        self._declined: dict[str, CacheDecision] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._default_session = f"model-{uuid.uuid4().hex[:12]}"
        self._client: httpx.Client | None = None
        self.last_decision: CacheDecision | None = None
        _register_atexit(self)

    def __repr__(self) -> str:
        return (
            f"ExplicitContextCache(base_url={self.base_url!r}, family={self.family!r}, "
            f"sessions={len(self._held)})"
        )

    # -- HTTP -----------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:
            headers = {"Content-Type": "application/json", **self._extra_headers}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = httpx.Client(
                base_url=self.base_url, headers=headers, timeout=self.policy.http_timeout_seconds
            )
        return self._client

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _CacheAPIError(what, None, type(exc).__name__) from None
        if response.status_code >= 400:
            detail = ""
            try:
                body = response.json()
                error = body.get("error", {}) if isinstance(body, dict) else {}
                detail = f"{error.get('type', '')}: {error.get('message', '')}"[:300]
            except ValueError:
                detail = response.text[:200]
            raise _CacheAPIError(what, response.status_code, detail)
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    # -- helpers ----------------------------------------------------------------------

    def _key(self, session_id: str) -> str:
        account = hashlib.sha256(f"{self.base_url}|{self._api_key or ''}".encode()).hexdigest()
        return f"{account[:16]}|{self.family}|{session_id}"

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _estimate_tokens(self, messages: Sequence[Mapping[str, Any]], tools: Any) -> int:
        """The package token counter's estimate of a prefix before the server counts it."""
        text = canonical_json({"messages": list(messages), "tools": list(tools or ())})
        return default_token_counter().count_text(text)

    def _alive_holders(self, entry: CacheEntry, now: float) -> dict[str, float]:
        horizon = now - self.policy.ttl_seconds
        return {h: t for h, t in entry.holders.items() if t >= horizon}

    def _apply(self, payload: dict[str, Any], entry: CacheEntry, n_prefix: int) -> dict[str, Any]:
        out = dict(payload)
        reset_ttl = self.policy.effective_reset_ttl
        if self.policy.explicit_usage == "message":
            content = f"cache_id={entry.cache_id}"
            if reset_ttl:
                content += f";reset_ttl={reset_ttl}"
            out["messages"] = [{"role": "cache", "content": content}, *out["messages"][n_prefix:]]
            out.pop("tools", None)
            if out.get("tool_choice") in ("auto", "none"):
                out.pop("tool_choice")
        else:
            headers = dict(out.get("extra_headers") or {})
            headers[CACHE_HEADER] = entry.cache_id
            if reset_ttl:
                headers[CACHE_RESET_TTL_HEADER] = str(reset_ttl)
            out["extra_headers"] = headers
        return out

    def _delete_remote(self, entry: CacheEntry, *, reason: str) -> None:
        try:
            self._call("DELETE", f"/caching/{entry.cache_id}", "cache delete")
            logger.debug("Deleted Kimi cache %s (%s)", entry.cache_id, reason)
        except _CacheAPIError as exc:
            if exc.status != 404:
                logger.warning("Could not delete Kimi cache %s: %s", entry.cache_id, exc)
            return  # already gone (storage accounted by whoever deleted it) or unknown
        minutes = max(0.0, (min(self.clock(), entry.expires_at) - entry.created_at) / 60.0)
        storage = entry.tokens * self.cache_pricing.storage_per_m_per_minute * minutes / 1e6
        if storage > 0:
            self.ledger.add_cache_event(
                session_id=entry.session_id,
                kind="storage",
                amount=storage,
                currency=self.cache_pricing.currency,
                cache_id=entry.cache_id,
            )

    def _verify(self, entry: CacheEntry) -> bool:
        """Ask the server whether the cache is alive; ``True`` if it is (or unknown)."""
        try:
            data = self._call("GET", f"/caching/{entry.cache_id}", "cache status")
        except _CacheAPIError as exc:
            if exc.status in (404, 410):
                return False
            logger.warning("Could not check Kimi cache %s: %s", entry.cache_id, exc)
            return True
        status = str(data.get("status", "ready"))
        if status not in _ALIVE_STATUSES:
            logger.info("Kimi cache %s is %s; it will be recreated", entry.cache_id, status)
            return False
        return True

    def _create(
        self,
        session_id: str,
        fingerprint: str,
        prefix: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        estimate: int,
    ) -> CacheEntry | None:
        now = self.clock()
        body: dict[str, Any] = {
            "model": self.family,
            "messages": prefix,
            "ttl": self.policy.ttl_seconds,
            "name": "langchain-kimi-context",
            "metadata": {
                "session": prompt_cache_key_for(session_id),
                "fingerprint": fingerprint[:32],
            },
        }
        if tools:
            body["tools"] = tools
        try:
            data = self._call("POST", "/caching", "cache create", json=body)
        except _CacheAPIError as exc:
            # A rejected request (4xx other than 429) will not succeed on retry: stop trying
            # for this prefix; server errors and rate limits are retried after a pause.
            permanent = exc.status is not None and 400 <= exc.status < 500 and exc.status != 429
            logger.warning(
                "Kimi cache creation for session %s failed, sending uncached%s: %s",
                session_id,
                " (not retried for this prefix)" if permanent else "",
                exc,
            )
            self._create_blocked_until[fingerprint] = (
                math.inf if permanent else now + self.policy.create_retry_after_seconds
            )
            return None
        cache_id = data.get("id")
        if not isinstance(cache_id, str) or data.get("status") == "error":
            logger.warning(
                "Kimi cache creation returned no usable cache (status %s)", data.get("status")
            )
            self._create_blocked_until[fingerprint] = now + self.policy.create_retry_after_seconds
            return None
        tokens = int(data.get("tokens") or estimate)
        expired_at = data.get("expired_at")
        expires_at = (
            float(expired_at)
            if isinstance(expired_at, int | float) and expired_at > now
            else now + self.policy.ttl_seconds
        )
        creation = tokens * self.cache_pricing.creation_per_m / 1e6
        self.ledger.add_cache_event(
            session_id=session_id,
            kind="create",
            amount=creation,
            currency=self.cache_pricing.currency,
            cache_id=cache_id,
        )
        logger.debug("Created Kimi cache %s for session %s", cache_id, session_id)
        return CacheEntry(
            cache_id=cache_id,
            fingerprint=fingerprint,
            session_id=session_id,
            family=self.family,
            prefix_messages=len(prefix),
            tokens=tokens,
            created_at=now,
            expires_at=expires_at,
            verified_at=now,
            holders={self.holder_id: now},
        )

    # -- the seam ---------------------------------------------------------------------

    def prepare(
        self,
        payload: dict[str, Any],
        *,
        session_id: str | None,
        messages: Sequence[BaseMessage] | None = None,
    ) -> dict[str, Any]:
        """Return the payload to send: canonical, with the cache header when it matches.

        Never raises for cache problems: on any cache-API error the payload goes out
        without the header.

        Args:
            payload: The request body (not modified).
            session_id: The session (``None`` = this instance's own default session).
            messages: The LangChain messages behind ``payload["messages"]`` (lets a
                ``summary``-marked message join the cached prefix).

        Returns:
            The payload to send.
        """
        out = (
            canonicalize_payload(payload, sort_tools=self.policy.sort_tools)
            if self.policy.canonicalize
            else dict(payload)
        )
        session = session_id or self._default_session
        request_messages = list(out.get("messages") or ())
        n_prefix = stable_prefix_length(request_messages, messages)
        tools = out.get("tools") or None
        if n_prefix == 0 and not tools:
            return out
        prefix = request_messages[:n_prefix]
        fingerprint = prefix_fingerprint(prefix, tools)
        key = self._key(session)
        with self._lock_for(key):
            entry = self._ensure_entry(key, session, fingerprint, prefix, tools)
        if entry is None:
            return out
        return self._apply(out, entry, n_prefix)

    def _ensure_entry(
        self,
        key: str,
        session: str,
        fingerprint: str,
        prefix: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
    ) -> CacheEntry | None:
        now = self.clock()
        try:
            entry = self.registry.get(key)
        except Exception as exc:
            logger.warning("Cache registry read failed, sending uncached: %s", exc)
            return None
        mine = self._created.get(key)
        if mine is not None and (entry is None or entry.cache_id != mine.cache_id):
            # Our cache was superseded in a shared registry (a race, or another worker
            # replaced it): do not leave it alive on the server.
            self._created.pop(key, None)
            self._delete_remote(mine, reason="superseded in the registry")
        if entry is not None and entry.fingerprint != fingerprint:
            logger.info(
                "Stable prefix of session %s changed; replacing Kimi cache %s",
                session,
                entry.cache_id,
            )
            self._delete_remote(entry, reason="prefix changed")
            self._safe_registry(self.registry.delete, key)
            self._created.pop(key, None)
            entry = None
        if entry is not None:
            expired = now >= entry.expires_at - self.policy.expiry_margin_seconds
            stale = now - entry.verified_at >= self.policy.verify_after_seconds
            if expired or stale:
                if not expired and self._verify(entry):
                    entry = entry.replace(verified_at=now)
                else:
                    if not expired:
                        logger.info("Kimi cache %s is gone; recreating", entry.cache_id)
                    else:
                        self._delete_remote(entry, reason="expired")
                    self._safe_registry(self.registry.delete, key)
                    self._created.pop(key, None)
                    entry = None
        if entry is None:
            if now < self._create_blocked_until.get(fingerprint, 0.0):
                return None
            estimate = self._estimate_tokens(prefix, tools)
            decision = self._declined.get(fingerprint)
            if decision is None:
                assert self.profile is not None
                decision = explicit_cache_decision(
                    estimate,
                    pricing=self.profile.pricing,
                    cache_pricing=self.cache_pricing,
                    policy=self.policy,
                )
            self.last_decision = decision
            if not decision.create:
                if fingerprint not in self._declined:
                    logger.debug("Not creating a Kimi cache: %s", decision.reason)
                self._declined[fingerprint] = decision
                return None
            entry = self._create(session, fingerprint, prefix, tools, estimate)
            if entry is None:
                return None
            # Another worker may have raced us to it: keep the first, drop ours.
            winner = self._safe_registry(self.registry.get, key)
            if (
                isinstance(winner, CacheEntry)
                and winner.fingerprint == fingerprint
                and winner.cache_id != entry.cache_id
            ):
                self._delete_remote(entry, reason="lost a creation race")
                entry = winner
            else:
                self._created[key] = entry
        reset = self.policy.effective_reset_ttl
        holders = self._alive_holders(entry, now)
        holders[self.holder_id] = now
        entry = entry.replace(
            holders=holders,
            expires_at=max(entry.expires_at, now + reset) if reset else entry.expires_at,
        )
        self._safe_registry(self.registry.put, key, entry)
        self._held[key] = session
        _register_atexit(self)
        return entry

    @staticmethod
    def _safe_registry(action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except Exception as exc:
            logger.warning("Cache registry update failed: %s", exc)
            return None

    async def aprepare(
        self,
        payload: dict[str, Any],
        *,
        session_id: str | None,
        messages: Sequence[BaseMessage] | None = None,
    ) -> dict[str, Any]:
        """Async :meth:`prepare` (cache-API calls run in a worker thread)."""
        return await asyncio.to_thread(
            self.prepare, payload, session_id=session_id, messages=messages
        )

    def record(
        self, payload: Mapping[str, Any], usage: Any, *, session_id: str | None
    ) -> dict[str, Any]:
        """Record usage; cached tokens of a hit are billed through the per-hit fee.

        If a request carried the cache header but the server reports no cached tokens,
        the cache is re-checked before its next use (it may have expired or been deleted).

        Args:
            payload: The request body that was sent.
            usage: The response's ``usage`` (or the response dict, or usage_metadata).
            session_id: The session.

        Returns:
            ``{"kimi_cache": {...}}`` for ``response_metadata``.
        """
        session = session_id or self._default_session
        headers = payload.get("extra_headers") or {}
        cache_id = headers.get(CACHE_HEADER) if isinstance(headers, Mapping) else None
        if cache_id is None:
            first = (payload.get("messages") or [{}])[0]
            if isinstance(first, Mapping) and first.get("role") == "cache":
                match = re.search(r"cache_id=([^;]+)", str(first.get("content", "")))
                cache_id = match.group(1) if match else None
        wire_usage = _usage_of(usage)
        hit = cache_id is not None and read_cached_tokens(wire_usage) > 0
        call = self._call_cost(
            payload,
            wire_usage,
            session_id,
            cache_cost=self.cache_pricing.per_hit_call if hit else 0.0,
            cache_currency=self.cache_pricing.currency if hit else None,
            cache_id=cache_id,
            cached_billed_by_cache=hit,
        )
        self.ledger.add_call(call)
        if cache_id is not None and not hit and wire_usage:
            key = self._key(session)
            entry = self._safe_registry(self.registry.get, key)
            if isinstance(entry, CacheEntry) and entry.cache_id == cache_id:
                logger.info("Kimi cache %s was not hit; re-checking it", cache_id)
                self._safe_registry(self.registry.put, key, entry.replace(verified_at=0.0))
        return {"kimi_cache": call.to_dict()}

    def close(self) -> None:
        """Delete the caches of the sessions this instance used (unless still shared).

        Safe to call more than once; errors are logged, never raised. Using the strategy
        again afterwards simply creates new caches.
        """
        held = dict(self._held)
        self._held.clear()
        self._created.clear()
        now = self.clock()
        for key, session in held.items():
            with self._lock_for(key):
                entry = self._safe_registry(self.registry.get, key)
                if not isinstance(entry, CacheEntry):
                    continue
                holders = self._alive_holders(entry, now)
                holders.pop(self.holder_id, None)
                if holders:
                    remaining = entry.replace(holders=holders)
                    self._safe_registry(self.registry.put, key, remaining)
                    logger.debug(
                        "Kimi cache %s of session %s stays: still used by %d holder(s)",
                        entry.cache_id,
                        session,
                        len(holders),
                    )
                    continue
                self._delete_remote(entry, reason="session closed")
                self._safe_registry(self.registry.delete, key)
        if self._client is not None:
            self._client.close()
            self._client = None
        _LIVE_EXPLICIT.discard(self)

    async def aclose(self) -> None:
        """Async :meth:`close` (runs in a worker thread)."""
        await asyncio.to_thread(self.close)
