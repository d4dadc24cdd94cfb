"""Context caching for Kimi: explicit cache API, automatic prefix caching, cost ledger.

Kimi bills a prompt token that is served from a context cache at a fraction of the
normal price, so on a long session the request *prefix* is the main cost lever. This
module makes cache hits the normal case and shows what they are worth:

* **Canonical serialisation** (:func:`canonicalize_payload`): tools are sorted by name,
  every JSON object (schemas, tool-call arguments, content parts) gets sorted keys and
  tool-call argument strings get stable separators, so the same logical prefix is sent
  byte for byte identically on every call.
* **Automatic prefix caching** (every current model, :class:`AutomaticPrefixCache`): a
  stable ``prompt_cache_key`` derived from the session id (hashed, so no user data leaks; a
  routing hint, not the cache identity) and a :class:`PrefixStabilityChecker` that
  explains what broke the prefix between two calls. ``context_cache="auto"`` picks it for
  every model whose profile says ``cache_kind="automatic"`` (all current ones).
* **Explicit Context Caching** (moonshot-v1, :class:`ExplicitContextCache`): one
  server-side cache per session for the stable prefix (leading system messages, a pinned
  compaction summary, the tools), recreated when the prefix changes, deleted on
  ``close()`` / ``aclose()`` / context-manager exit (and at interpreter exit, best effort);
  a cache-API failure never fails a chat call (the request goes out uncached). A
  :class:`CacheRegistry` (in memory, or in a LangGraph ``BaseStore`` via
  :class:`StoreCacheRegistry`) lets several models or worker processes share one cache
  per session.
* **Cost guard** (:func:`explicit_cache_decision`): an explicit cache is created only when
  the expected savings pay for its creation and storage. All thresholds live in
  :class:`CachePolicy`.
* **Cost ledger** (:class:`CostLedger`): per call and per session, prompt tokens split into
  cache hits and misses, output tokens, token cost in the profile's currency and the
  explicit cache's own costs (creation, storage, per-hit fee) in their currency.

The strategies plug into :class:`~langchain_kimi_context.KimiChatModel` through
``prepare(payload, *, session_id)`` (before sending) and
``record(payload, response, *, session_id)`` (after the response);
:func:`create_cache_strategy` picks one from ``context_cache="auto" | "explicit" | "off"``.

Modules (each states its contract in its docstring):

* :mod:`~langchain_kimi_context.caching.policy`: headers, modes, :class:`CachePolicy`, cost guard.
* :mod:`~langchain_kimi_context.caching.canonical`: canonical request form, fingerprints.
* :mod:`~langchain_kimi_context.caching.stability`: what broke the prefix between two calls.
* :mod:`~langchain_kimi_context.caching.ledger`: per-call and per-session cost.
* :mod:`~langchain_kimi_context.caching.strategies`: off and automatic prefix caching.
* :mod:`~langchain_kimi_context.caching.registry`: live explicit caches shared across processes.
* :mod:`~langchain_kimi_context.caching.explicit`: the explicit cache API client and lifecycle.
* :mod:`~langchain_kimi_context.caching.factory`: the strategy for a mode and a profile.
"""

from __future__ import annotations

from langchain_kimi_context.caching.canonical import (
    canonical_json,
    canonicalize_messages,
    canonicalize_payload,
    canonicalize_tools,
    prefix_fingerprint,
    prompt_cache_key_for,
    read_cached_tokens,
    stable_prefix_length,
)
from langchain_kimi_context.caching.explicit import ExplicitContextCache
from langchain_kimi_context.caching.factory import create_cache_strategy, make_cache_strategy
from langchain_kimi_context.caching.ledger import CallCost, CostLedger, SessionCost
from langchain_kimi_context.caching.policy import (
    CACHE_HEADER,
    CACHE_RESET_TTL_HEADER,
    CacheDecision,
    CacheMode,
    CachePolicy,
    explicit_cache_decision,
)
from langchain_kimi_context.caching.registry import (
    CacheEntry,
    CacheRegistry,
    InMemoryCacheRegistry,
    StoreCacheRegistry,
)
from langchain_kimi_context.caching.stability import (
    PrefixBreak,
    PrefixStabilityChecker,
    find_prefix_break,
)
from langchain_kimi_context.caching.stability import PrefixBreakKind as PrefixBreakKind
from langchain_kimi_context.caching.stability import stability_logger as stability_logger
from langchain_kimi_context.caching.strategies import AutomaticPrefixCache, NoContextCache

__all__ = [
    "CACHE_HEADER",
    "CACHE_RESET_TTL_HEADER",
    "AutomaticPrefixCache",
    "CacheDecision",
    "CacheEntry",
    "CacheMode",
    "CachePolicy",
    "CacheRegistry",
    "CallCost",
    "CostLedger",
    "ExplicitContextCache",
    "InMemoryCacheRegistry",
    "NoContextCache",
    "PrefixBreak",
    "PrefixStabilityChecker",
    "SessionCost",
    "StoreCacheRegistry",
    "canonical_json",
    "canonicalize_messages",
    "canonicalize_payload",
    "canonicalize_tools",
    "create_cache_strategy",
    "explicit_cache_decision",
    "find_prefix_break",
    "make_cache_strategy",
    "prefix_fingerprint",
    "prompt_cache_key_for",
    "read_cached_tokens",
    "stable_prefix_length",
]
