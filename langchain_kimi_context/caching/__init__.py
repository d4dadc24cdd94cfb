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
* **Explicit Context Caching** (moonshot-v1, :class:`ExplicitContextCache`): the seed's
  design. On the first request of a session a cache is created (``POST /v1/caching``) for
  the stable prefix (leading system messages, a pinned compaction summary, the tools); every
  request whose prefix and tools match its fingerprint carries ``X-Msh-Context-Cache`` and
  ``X-Msh-Context-Cache-Reset-TTL`` (or a ``role: "cache"`` message). A changed prefix
  deletes the old cache and creates a new one; a request that does not match is sent
  without the header; a cache the server reports expired or missing is recreated; any
  cache-API failure is logged and the request goes out uncached. Caches belong to a
  session and are deleted on ``close()`` / ``aclose()`` / context-manager exit (and at
  interpreter exit, best effort). A :class:`CacheRegistry` (in memory, or in a LangGraph
  ``BaseStore`` via :class:`StoreCacheRegistry`) lets several models or worker processes
  share one cache per session.
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

Example:
    >>> from langchain_kimi_context.profiles import get_profile
    >>> strategy = create_cache_strategy("auto", profile=get_profile("kimi-k2.6"))
    >>> payload = {"model": "kimi-k2.6", "messages": [{"role": "user", "content": "hi"}]}
    >>> out = strategy.prepare(payload, session_id="thread-1")
    >>> out["prompt_cache_key"] == prompt_cache_key_for("thread-1")
    True
    >>> usage = {"prompt_tokens": 1000, "completion_tokens": 10, "cached_tokens": 768}
    >>> strategy.record(out, {"usage": usage}, session_id="thread-1")["kimi_cache"]["cache_read"]
    768
    >>> strategy.ledger.session("thread-1").cached_tokens
    768
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from langchain_core.messages import BaseMessage

from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.profiles import (
    ExplicitCachePricing,
    KimiModelProfile,
    Pricing,
)
from langchain_kimi_context.thinking_rules import web_search_echoes
from langchain_kimi_context.tokens import default_token_counter

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

logger = logging.getLogger(__name__)
stability_logger = logging.getLogger(__name__ + ".stability")
"""Logger of the prefix-stability checker: set it to DEBUG to see what breaks the cache."""

CACHE_HEADER = "X-Msh-Context-Cache"
"""Header naming the explicit cache a request uses."""

CACHE_RESET_TTL_HEADER = "X-Msh-Context-Cache-Reset-TTL"
"""Header asking the server to reset the explicit cache's TTL to N seconds."""

CacheMode = Literal["auto", "explicit", "off"]
"""The ``context_cache`` setting of :class:`~langchain_kimi_context.KimiChatModel`."""

_ALIVE_STATUSES = frozenset({"ready", "pending"})


# ---------------------------------------------------------------------------------
# Policy: every caching threshold in one place
# ---------------------------------------------------------------------------------


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
        """The TTL sent in ``X-Msh-Context-Cache-Reset-TTL`` (0 = header not sent).

        Example:
            >>> CachePolicy(ttl_seconds=600).effective_reset_ttl
            600
        """
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

        Example:
            >>> CachePolicy(usd_per_unit={"CNY": 0.5}).to_usd(10, "CNY")
            5.0
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


# ---------------------------------------------------------------------------------
# Canonical serialisation and fingerprints
# ---------------------------------------------------------------------------------


def _sort_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _sort_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sort_keys(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically: sorted keys, compact separators, UTF-8 kept.

    Args:
        value: Any JSON-serialisable value.

    Returns:
        The canonical JSON text.

    Example:
        >>> canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}})
        '{"a":{"c":"é","d":[1,2]},"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tool_name(tool: Mapping[str, Any]) -> str:
    function = tool.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        return str(function["name"])
    return str(tool.get("name", ""))


def canonicalize_tools(
    tools: Sequence[Mapping[str, Any]] | None, *, sort: bool = True
) -> list[dict[str, Any]]:
    """Return tool definitions in canonical form (the input is not modified).

    Every JSON object gets sorted keys and, with ``sort``, tools are ordered by name, so
    binding the same tools in another order or with differently ordered schema keys
    produces the same bytes.

    Args:
        tools: OpenAI-format tool definitions (``{"type": "function", "function": ...}``).
        sort: Sort tools by function name.

    Returns:
        New canonical tool dicts.

    Example:
        >>> t1 = {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}}
        >>> t2 = {"function": {"parameters": {"type": "object"}, "name": "a"}, "type": "function"}
        >>> [t["function"]["name"] for t in canonicalize_tools([t1, t2])]
        ['a', 'b']
        >>> canonical_json(canonicalize_tools([t1, t2])) == canonical_json(
        ...     canonicalize_tools([t2, t1]))
        True
    """
    result = [_sort_keys(dict(tool)) for tool in tools or ()]
    if sort:
        result.sort(key=_tool_name)
    return result


def _canonical_arguments(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return canonical_json(parsed)


def _canonical_message(message: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _sort_keys(dict(message))
    tool_calls = out.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and "arguments" in function:
                function["arguments"] = _canonical_arguments(function["arguments"])
    return out


def canonicalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return chat messages (API dicts) in canonical form (the input is not modified).

    Keys are sorted at every level and tool-call ``arguments`` strings are re-serialised
    with sorted keys and compact separators (invalid JSON is kept as is). Text content is
    never changed.

    Args:
        messages: Messages in the OpenAI/Kimi wire format.

    Returns:
        New canonical message dicts.

    Example:
        >>> msg = {"role": "assistant", "content": "", "tool_calls": [{"id": "f:0",
        ...     "type": "function", "function": {"name": "f", "arguments": '{"b": 1, "a": 2}'}}]}
        >>> canonicalize_messages([msg])[0]["tool_calls"][0]["function"]["arguments"]
        '{"a":2,"b":1}'
    """
    return [_canonical_message(m) for m in messages]


def canonicalize_payload(payload: Mapping[str, Any], *, sort_tools: bool = True) -> dict[str, Any]:
    """Return a copy of a chat-completions payload with canonical ``messages`` and ``tools``.

    Args:
        payload: The request body (``model``, ``messages``, ``tools``, ...).
        sort_tools: Sort tools by name.

    Returns:
        A new payload; other keys are copied unchanged.

    Example:
        >>> p = {"model": "m", "messages": [{"content": "hi", "role": "user"}]}
        >>> list(canonicalize_payload(p)["messages"][0])
        ['content', 'role']
    """
    out = dict(payload)
    if isinstance(out.get("messages"), list):
        out["messages"] = canonicalize_messages(out["messages"])
    if out.get("tools"):
        out["tools"] = canonicalize_tools(out["tools"], sort=sort_tools)
    return out


def prefix_fingerprint(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """Return the fingerprint (SHA-256 hex) of a prefix of messages plus tools.

    Two prefixes have the same fingerprint iff their canonical forms are identical, so a
    fingerprint decides whether an explicit cache can be reused.

    Args:
        messages: The prefix messages (API dicts).
        tools: The tool definitions.

    Returns:
        64 hex characters.

    Example:
        >>> a = prefix_fingerprint([{"role": "system", "content": "x"}])
        >>> a == prefix_fingerprint([{"content": "x", "role": "system"}])
        True
        >>> a == prefix_fingerprint([{"role": "system", "content": "y"}])
        False
    """
    body = canonical_json(
        {"messages": canonicalize_messages(messages), "tools": canonicalize_tools(tools)}
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def stable_prefix_length(
    messages: Sequence[Mapping[str, Any]],
    source_messages: Sequence[BaseMessage] | None = None,
) -> int:
    """Return how many leading messages form the stable, cacheable prefix.

    The stable prefix is the run of leading ``system`` messages plus any leading message
    marked ``"summary"`` (see :mod:`langchain_kimi_context.context.markers`; a compaction's
    pinned summary). Markers are read from ``source_messages`` (the LangChain messages the
    payload was built from) when they line up one to one with ``messages``.

    Args:
        messages: The payload's messages (API dicts).
        source_messages: The LangChain messages behind them, if known.

    Returns:
        The number of leading messages to cache (0 = nothing stable).

    Example:
        >>> stable_prefix_length([{"role": "system", "content": "a"},
        ...                       {"role": "user", "content": "b"}])
        1
    """
    aligned = source_messages is not None and len(source_messages) == len(messages)
    count = 0
    for index, message in enumerate(messages):
        if message.get("role") == "system":
            count += 1
            continue
        if aligned and source_messages is not None and is_marked(source_messages[index], "summary"):
            count += 1
            continue
        break
    return count


def prompt_cache_key_for(session_id: str, *, prefix: str = "lkc-") -> str:
    """Return the ``prompt_cache_key`` derived from a session/thread id.

    The id is hashed, so the key is stable for a session but reveals nothing about it.

    Args:
        session_id: The session or LangGraph thread id.
        prefix: A prefix for the key.

    Returns:
        ``prefix`` + 32 hex characters.

    Example:
        >>> prompt_cache_key_for("thread-1") == prompt_cache_key_for("thread-1")
        True
        >>> len(prompt_cache_key_for("thread-1"))
        36
    """
    digest = hashlib.sha256(f"kimi-session:{session_id}".encode()).hexdigest()[:32]
    return prefix + digest


def read_cached_tokens(usage: Mapping[str, Any] | None) -> int:
    """Return the cached prompt tokens of a usage object, the way Kimi reports them.

    Moonshot's own field is a top-level ``cached_tokens``; some deployments send
    ``prompt_tokens_details.cached_tokens`` instead. The top-level one wins.

    Args:
        usage: The ``usage`` object of a response (or ``None``).

    Returns:
        The cached tokens (0 when absent).

    Example:
        >>> read_cached_tokens({"prompt_tokens": 10, "cached_tokens": 4})
        4
        >>> read_cached_tokens({"prompt_tokens_details": {"cached_tokens": 3}})
        3
    """
    if not usage:
        return 0
    top = usage.get("cached_tokens")
    if isinstance(top, int | float) and not isinstance(top, bool):
        return int(top)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, Mapping):
        nested = details.get("cached_tokens")
        if isinstance(nested, int | float) and not isinstance(nested, bool):
            return int(nested)
    return 0


# ---------------------------------------------------------------------------------
# Prefix stability checker
# ---------------------------------------------------------------------------------

_TIMESTAMPISH = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}(:\d{2})?|\b\d{10,13}\b|"
    r"\b(mon|tue|wed|thu|fri|sat|sun)[a-z]*\b|\b(today|now|current (date|time))\b",
    re.IGNORECASE,
)

PrefixBreakKind = Literal[
    "tools_reordered",
    "tools_changed",
    "tool_schema_changed",
    "timestamp_in_system_prompt",
    "system_prompt_changed",
    "reasoning_content_dropped",
    "message_edited",
    "message_inserted_or_removed",
    "history_truncated",
]


@dataclass(frozen=True, kw_only=True)
class PrefixBreak:
    """Why the prefix of a request differs from the previous request of its session.

    Attributes:
        session_id: The session.
        kind: A machine-readable cause (e.g. ``"timestamp_in_system_prompt"``).
        reason: A human-readable explanation.
        part: ``"tools"`` or ``"messages"``.
        message_index: Index of the first differing message (``None`` for tools).
        byte_offset: Offset of the first differing byte in the canonical serialisation of
            the request prefix (tools, then one message per line).
        previous_excerpt: Text around that byte in the previous request.
        current_excerpt: Text around that byte in this request.
        reusable_messages: Leading messages still shared with the previous request.

    Example:
        >>> b = PrefixBreak(session_id="s", kind="message_edited", reason="r",
        ...                 part="messages", message_index=2, byte_offset=10,
        ...                 previous_excerpt="a", current_excerpt="b", reusable_messages=2)
        >>> b.kind
        'message_edited'
    """

    session_id: str
    kind: PrefixBreakKind
    reason: str
    part: Literal["tools", "messages"]
    message_index: int | None
    byte_offset: int
    previous_excerpt: str
    current_excerpt: str
    reusable_messages: int


def _serialise_prefix(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> tuple[str, list[str]]:
    tools_text = canonical_json(list(tools or ()))
    lines = [canonical_json(m) for m in messages]
    return tools_text, lines


def _first_diff(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


def _excerpt(text: str, offset: int, width: int = 40) -> str:
    return text[max(0, offset - width) : offset + width]


def _content_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return canonical_json(content)


def _explain_message_change(
    previous: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[PrefixBreakKind, str]:
    role = previous.get("role")
    if role != current.get("role"):
        return (
            "message_inserted_or_removed",
            f"role changed from {role!r} to {current.get('role')!r}: a message was "
            "inserted, removed or re-ordered",
        )
    if (
        role == "assistant"
        and previous.get("reasoning_content")
        and not current.get("reasoning_content")
    ):
        return (
            "reasoning_content_dropped",
            "reasoning_content of an earlier assistant message was dropped; replay it "
            "unchanged to keep the prefix stable",
        )
    if role == "system":
        old, new = _content_text(previous), _content_text(current)
        at = _first_diff(old, new)
        window_old, window_new = _excerpt(old, at, 24), _excerpt(new, at, 24)
        if _TIMESTAMPISH.search(window_old) and _TIMESTAMPISH.search(window_new):
            return (
                "timestamp_in_system_prompt",
                "the system prompt changed where it looks like a date/time; move volatile "
                "values out of the system prompt (e.g. into the latest user message)",
            )
        return ("system_prompt_changed", "the system prompt changed")
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    return (
        "message_edited",
        f"an earlier {role} message was edited (changed field(s): {', '.join(changed)})",
    )


def _explain_tools_change(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> tuple[PrefixBreakKind, str]:
    old_names = [_tool_name(t) for t in previous]
    new_names = [_tool_name(t) for t in current]
    if sorted(old_names) != sorted(new_names):
        added = sorted(set(new_names) - set(old_names))
        removed = sorted(set(old_names) - set(new_names))
        return ("tools_changed", f"the tool list changed (added {added}, removed {removed})")
    old_by_name = {_tool_name(t): canonical_json(t) for t in previous}
    new_by_name = {_tool_name(t): canonical_json(t) for t in current}
    changed = sorted(n for n in old_by_name if old_by_name[n] != new_by_name[n])
    if changed:
        return ("tool_schema_changed", f"the schema of tool(s) {changed} changed")
    return (
        "tools_reordered",
        f"the tools were re-ordered ({old_names} -> {new_names}); bind them in a fixed "
        "order or keep canonicalize/sort_tools on",
    )


def find_prefix_break(
    previous: Mapping[str, Any], current: Mapping[str, Any], *, session_id: str = ""
) -> PrefixBreak | None:
    """Compare two consecutive request payloads of a session and explain a prefix break.

    The automatic prefix cache can serve the new request from cache only if it starts with
    exactly the previous request (same tools, same earlier messages). This returns
    ``None`` when that holds, else the first differing byte/message and the likely cause.

    Args:
        previous: The previous request body (``messages``, ``tools``).
        current: The new request body.
        session_id: Reported back in the result.

    Returns:
        A :class:`PrefixBreak`, or ``None`` if the previous request is a prefix of this one.

    Example:
        >>> sys1 = {"role": "system", "content": "You help. Date: 2026-01-01 10:00"}
        >>> sys2 = {"role": "system", "content": "You help. Date: 2026-01-01 10:05"}
        >>> user = {"role": "user", "content": "hi"}
        >>> find_prefix_break({"messages": [sys1, user]}, {"messages": [sys2, user]}).kind
        'timestamp_in_system_prompt'
        >>> find_prefix_break({"messages": [sys1]}, {"messages": [sys1, user]}) is None
        True
    """
    old_tools = list(previous.get("tools") or ())
    new_tools = list(current.get("tools") or ())
    old_messages = list(previous.get("messages") or ())
    new_messages = list(current.get("messages") or ())
    old_tools_text, old_lines = _serialise_prefix(old_messages, old_tools)
    new_tools_text, new_lines = _serialise_prefix(new_messages, new_tools)
    if old_tools_text != new_tools_text:
        at = _first_diff(old_tools_text, new_tools_text)
        kind, reason = _explain_tools_change(old_tools, new_tools)
        return PrefixBreak(
            session_id=session_id,
            kind=kind,
            reason=reason,
            part="tools",
            message_index=None,
            byte_offset=len(old_tools_text[:at].encode()),
            previous_excerpt=_excerpt(old_tools_text, at),
            current_excerpt=_excerpt(new_tools_text, at),
            reusable_messages=0,
        )
    offset = len(old_tools_text.encode()) + 1
    for index, old_line in enumerate(old_lines):
        if index >= len(new_lines):
            return PrefixBreak(
                session_id=session_id,
                kind="history_truncated",
                reason=(
                    f"the request has {len(new_lines)} messages, fewer than the "
                    f"{len(old_lines)} of the previous one (history cut or compacted)"
                ),
                part="messages",
                message_index=index,
                byte_offset=offset,
                previous_excerpt=_excerpt(old_line, 0),
                current_excerpt="",
                reusable_messages=index,
            )
        new_line = new_lines[index]
        if old_line != new_line:
            at = _first_diff(old_line, new_line)
            kind, reason = _explain_message_change(old_messages[index], new_messages[index])
            return PrefixBreak(
                session_id=session_id,
                kind=kind,
                reason=f"message {index}: {reason}",
                part="messages",
                message_index=index,
                byte_offset=offset + len(old_line[:at].encode()),
                previous_excerpt=_excerpt(old_line, at),
                current_excerpt=_excerpt(new_line, at),
                reusable_messages=index,
            )
        offset += len(old_line.encode()) + 1
    return None


class PrefixStabilityChecker:
    """Debug facility: remembers each session's last request and reports prefix breaks.

    Reports go to :data:`stability_logger` (``langchain_kimi_context.caching.stability``)
    at WARNING when the checker was enabled explicitly, at DEBUG otherwise, and are kept
    in :attr:`reports` (the most recent ``max_reports``).

    Args:
        enabled: Check every call. If ``False`` the checker only runs while
            :data:`stability_logger` is enabled for DEBUG.
        max_sessions: Sessions whose last request is remembered (oldest dropped first).
        max_reports: Reports kept in :attr:`reports`.

    Example:
        >>> checker = PrefixStabilityChecker(enabled=True)
        >>> t = lambda n: {"type": "function", "function": {"name": n}}
        >>> checker.check("s", {"messages": [], "tools": [t("a"), t("b")]}) is None
        True
        >>> checker.check("s", {"messages": [], "tools": [t("b"), t("a")]}).kind
        'tools_reordered'
    """

    def __init__(
        self, *, enabled: bool = False, max_sessions: int = 1024, max_reports: int = 100
    ) -> None:
        self.enabled = enabled
        self.max_sessions = max_sessions
        self.max_reports = max_reports
        self.reports: list[PrefixBreak] = []
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether the checker runs (enabled, or its logger is at DEBUG).

        Example:
            >>> PrefixStabilityChecker(enabled=True).active
            True
        """
        return self.enabled or stability_logger.isEnabledFor(logging.DEBUG)

    def check(self, session_id: str, payload: Mapping[str, Any]) -> PrefixBreak | None:
        """Compare ``payload`` with the session's previous request and remember it.

        Args:
            session_id: The session.
            payload: The request body about to be sent.

        Returns:
            The break, or ``None`` (also when inactive or for the first request).

        Example:
            >>> c = PrefixStabilityChecker(enabled=True)
            >>> c.check("s", {"messages": [{"role": "user", "content": "a"}]}) is None
            True
        """
        if not self.active:
            return None
        snapshot = {
            "messages": copy.deepcopy(list(payload.get("messages") or ())),
            "tools": copy.deepcopy(list(payload.get("tools") or ())),
        }
        with self._lock:
            previous = self._last.pop(session_id, None)
            self._last[session_id] = snapshot
            while len(self._last) > self.max_sessions:
                self._last.pop(next(iter(self._last)))
        if previous is None:
            return None
        found = find_prefix_break(previous, snapshot, session_id=session_id)
        if found is not None:
            with self._lock:
                self.reports.append(found)
                del self.reports[: -self.max_reports]
            level = logging.WARNING if self.enabled else logging.DEBUG
            stability_logger.log(
                level,
                "Prompt prefix of session %s broke at byte %d (%s): %s | before: %r | now: %r",
                session_id,
                found.byte_offset,
                found.kind,
                found.reason,
                found.previous_excerpt,
                found.current_excerpt,
            )
        return found


# ---------------------------------------------------------------------------------
# Cost ledger
# ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CallCost:
    """Tokens and cost of one call.

    Attributes:
        session_id: The session (``None`` if the call had none).
        model: The model id.
        cache_mode: ``"automatic"``, ``"explicit"`` or ``"off"``.
        prompt_tokens: All prompt tokens.
        cached_tokens: Prompt tokens served from the cache (the server's count).
        output_tokens: Completion tokens (reasoning included).
        cost: Token cost in ``currency``.
        currency: Currency of ``cost`` (the profile's).
        cache_cost: Explicit-cache charges of this call (creation, per-hit fee).
        cache_currency: Currency of ``cache_cost``.
        cache_id: The explicit cache used, if any.
        timestamp: When the call was recorded (clock seconds).
        web_search_calls: Builtin ``$web_search`` calls completed by the request; their
            per-call fee (``Pricing.web_search_call``) is included in ``cost``.

    Example:
        >>> c = CallCost(session_id="s", model="m", cache_mode="automatic",
        ...              prompt_tokens=100, cached_tokens=75, output_tokens=5,
        ...              cost=0.0, currency="USD")
        >>> c.uncached_tokens
        25
    """

    session_id: str | None
    model: str
    cache_mode: str
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    cost: float
    currency: str
    cache_cost: float = 0.0
    cache_currency: str | None = None
    cache_id: str | None = None
    timestamp: float = 0.0
    web_search_calls: int = 0

    @property
    def uncached_tokens(self) -> int:
        """Prompt tokens billed at the cache-miss price.

        Example:
            >>> CallCost(session_id=None, model="m", cache_mode="off", prompt_tokens=9,
            ...          cached_tokens=0, output_tokens=0, cost=0, currency="USD"
            ...          ).uncached_tokens
            9
        """
        return max(0, self.prompt_tokens - self.cached_tokens)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (what goes into ``response_metadata``).

        Example:
            >>> CallCost(session_id="s", model="m", cache_mode="off", prompt_tokens=1,
            ...          cached_tokens=0, output_tokens=0, cost=0, currency="USD"
            ...          ).to_dict()["cache_read"]
            0
        """
        data = asdict(self)
        data["cache_read"] = self.cached_tokens
        data["cache_miss"] = self.uncached_tokens
        return data


@dataclass(kw_only=True)
class SessionCost:
    """Totals of one session (or of the whole ledger).

    Attributes:
        session_id: The session (``None`` for ledger-wide totals).
        calls: Number of calls.
        prompt_tokens: All prompt tokens.
        cached_tokens: Prompt tokens served from the cache.
        output_tokens: Completion tokens.
        cost: Token cost per currency.
        cache_cost: Explicit-cache charges per currency (creation, storage, hit fees).
        caches_created: Explicit caches created.

    Example:
        >>> s = SessionCost(session_id="s", calls=2, prompt_tokens=200, cached_tokens=150)
        >>> s.cached_share
        0.75
    """

    session_id: str | None
    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost: dict[str, float] = field(default_factory=dict)
    cache_cost: dict[str, float] = field(default_factory=dict)
    caches_created: int = 0

    @property
    def uncached_tokens(self) -> int:
        """Prompt tokens billed at the miss price.

        Example:
            >>> SessionCost(session_id=None, prompt_tokens=10, cached_tokens=4).uncached_tokens
            6
        """
        return max(0, self.prompt_tokens - self.cached_tokens)

    @property
    def cached_share(self) -> float:
        """Share of prompt tokens served from the cache (0.0 without calls).

        Example:
            >>> SessionCost(session_id=None).cached_share
            0.0
        """
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def total(self, currency: str) -> float:
        """Token cost plus cache cost in ``currency`` (amounts in other currencies ignored).

        Args:
            currency: ISO code.

        Returns:
            The sum.

        Example:
            >>> SessionCost(session_id=None, cost={"USD": 1.5}, cache_cost={"USD": 0.5}
            ...             ).total("USD")
            2.0
        """
        return self.cost.get(currency, 0.0) + self.cache_cost.get(currency, 0.0)

    def _add_call(self, call: CallCost) -> None:
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.cached_tokens += call.cached_tokens
        self.output_tokens += call.output_tokens
        self.cost[call.currency] = self.cost.get(call.currency, 0.0) + call.cost
        if call.cache_cost and call.cache_currency:
            self.cache_cost[call.cache_currency] = (
                self.cache_cost.get(call.cache_currency, 0.0) + call.cache_cost
            )


@dataclass(frozen=True, kw_only=True)
class _CacheEvent:
    session_id: str | None
    kind: str
    amount: float
    currency: str
    cache_id: str


class CostLedger:
    """Thread-safe ledger of every call's tokens and cost, per session.

    Example:
        >>> ledger = CostLedger()
        >>> ledger.add_call(CallCost(session_id="s", model="m", cache_mode="automatic",
        ...     prompt_tokens=1000, cached_tokens=900, output_tokens=10, cost=0.001,
        ...     currency="USD"))
        >>> ledger.session("s").cached_share
        0.9
        >>> ledger.total().calls
        1
    """

    def __init__(self) -> None:
        self._calls: list[CallCost] = []
        self._events: list[_CacheEvent] = []
        self._lock = threading.Lock()

    def add_call(self, call: CallCost) -> None:
        """Record a call.

        Args:
            call: The call's tokens and cost.

        Example:
            >>> CostLedger().add_call(CallCost(session_id=None, model="m", cache_mode="off",
            ...     prompt_tokens=1, cached_tokens=0, output_tokens=1, cost=0, currency="USD"))
        """
        with self._lock:
            self._calls.append(call)

    def add_cache_event(
        self, *, session_id: str | None, kind: str, amount: float, currency: str, cache_id: str
    ) -> None:
        """Record an explicit-cache charge not tied to one call (e.g. storage).

        Args:
            session_id: The session owning the cache.
            kind: ``"create"``, ``"storage"``, ...
            amount: The charge.
            currency: Its currency.
            cache_id: The cache.

        Example:
            >>> ledger = CostLedger()
            >>> ledger.add_cache_event(session_id="s", kind="storage", amount=0.5,
            ...                        currency="CNY", cache_id="cache-1")
            >>> ledger.session("s").cache_cost
            {'CNY': 0.5}
        """
        with self._lock:
            self._events.append(
                _CacheEvent(
                    session_id=session_id,
                    kind=kind,
                    amount=amount,
                    currency=currency,
                    cache_id=cache_id,
                )
            )

    def calls(self, session_id: str | None = None) -> list[CallCost]:
        """Return the recorded calls, optionally of one session only.

        Args:
            session_id: Filter (``None`` = all calls).

        Returns:
            The calls, oldest first.

        Example:
            >>> CostLedger().calls()
            []
        """
        with self._lock:
            return [c for c in self._calls if session_id is None or c.session_id == session_id]

    def sessions(self) -> list[str]:
        """Return the ids of the sessions with calls or cache charges.

        Example:
            >>> CostLedger().sessions()
            []
        """
        with self._lock:
            ids = {c.session_id for c in self._calls} | {e.session_id for e in self._events}
        return sorted(i for i in ids if i is not None)

    def _summarise(self, session_id: str | None, *, all_sessions: bool) -> SessionCost:
        summary = SessionCost(session_id=session_id)
        with self._lock:
            calls = list(self._calls)
            events = list(self._events)
        for call in calls:
            if all_sessions or call.session_id == session_id:
                summary._add_call(call)
        for event in events:
            if all_sessions or event.session_id == session_id:
                summary.cache_cost[event.currency] = (
                    summary.cache_cost.get(event.currency, 0.0) + event.amount
                )
                if event.kind == "create":
                    summary.caches_created += 1
        return summary

    def session(self, session_id: str | None) -> SessionCost:
        """Return the totals of one session.

        Args:
            session_id: The session.

        Returns:
            Its totals (zeros if unknown).

        Example:
            >>> CostLedger().session("nope").calls
            0
        """
        return self._summarise(session_id, all_sessions=False)

    def total(self) -> SessionCost:
        """Return the totals over all sessions.

        Example:
            >>> CostLedger().total().prompt_tokens
            0
        """
        return self._summarise(None, all_sessions=True)

    def reset(self) -> None:
        """Forget every call and charge.

        Example:
            >>> ledger = CostLedger(); ledger.reset(); ledger.calls()
            []
        """
        with self._lock:
            self._calls.clear()
            self._events.clear()


def _usage_of(response: Any) -> dict[str, Any]:
    """Extract a wire-format usage dict from a response dict, usage dict or usage_metadata."""
    if response is None:
        return {}
    if hasattr(response, "model_dump"):
        response = response.model_dump()
    if not isinstance(response, Mapping):
        return {}
    usage = response.get("usage", response)
    if not isinstance(usage, Mapping):
        return {}
    if "prompt_tokens" in usage or "cached_tokens" in usage:
        return dict(usage)
    if "input_tokens" in usage:  # LangChain usage_metadata
        details = usage.get("input_token_details") or {}
        return {
            "prompt_tokens": usage.get("input_tokens", 0),
            "completion_tokens": usage.get("output_tokens", 0),
            "cached_tokens": details.get("cache_read", 0) or 0,
        }
    return {}


# ---------------------------------------------------------------------------------
# Strategies: off, automatic
# ---------------------------------------------------------------------------------


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

        Example:
            >>> s = NoContextCache()
            >>> r = s.record({"model": "kimi-k2.6"}, {"prompt_tokens": 10,
            ...     "completion_tokens": 2}, session_id=None)
            >>> r["kimi_cache"]["prompt_tokens"]
            10
        """
        call = self._call_cost(payload, usage, session_id)
        self.ledger.add_call(call)
        return {"kimi_cache": call.to_dict()}

    def close(self) -> None:
        """Release resources (nothing to release for this strategy).

        Example:
            >>> NoContextCache().close()
        """

    async def aclose(self) -> None:
        """Async :meth:`close`.

        Example:
            >>> import asyncio; asyncio.run(NoContextCache().aclose())
        """
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

        Example:
            >>> NoContextCache().prepare({"messages": []}, session_id=None)
            {'messages': []}
        """
        return payload

    async def aprepare(self, payload: dict[str, Any], *, session_id: str | None) -> dict[str, Any]:
        """Async :meth:`prepare`.

        Example:
            >>> import asyncio
            >>> asyncio.run(NoContextCache().aprepare({"messages": []}, session_id=None))
            {'messages': []}
        """
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

        Example:
            >>> out = AutomaticPrefixCache().prepare({"messages": []}, session_id="t")
            >>> out["prompt_cache_key"] == prompt_cache_key_for("t")
            True
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
        """Async :meth:`prepare` (no I/O, runs inline).

        Example:
            >>> import asyncio
            >>> out = asyncio.run(AutomaticPrefixCache().aprepare({"messages": []},
            ...                                                   session_id="t"))
            >>> "prompt_cache_key" in out
            True
        """
        return self.prepare(payload, session_id=session_id)


# ---------------------------------------------------------------------------------
# Explicit caching: cost rule, registry, manager
# ---------------------------------------------------------------------------------


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


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    """A live explicit cache as recorded in a :class:`CacheRegistry`.

    Attributes:
        cache_id: The server's id (``cache-...``).
        fingerprint: :func:`prefix_fingerprint` of the cached messages and tools.
        session_id: The session owning it.
        family: The cache model family (``"moonshot-v1"``).
        prefix_messages: Number of leading request messages the cache covers.
        tokens: Tokens in the cache (the server's count, else an estimate).
        created_at: Creation time (clock seconds).
        expires_at: Expected expiry (clock seconds; moved forward by each TTL reset).
        verified_at: Last time the server confirmed the cache is alive.
        holders: Strategy instances using it, with the time each last used it.

    Example:
        >>> e = CacheEntry(cache_id="cache-1", fingerprint="f", session_id="s",
        ...                family="moonshot-v1", prefix_messages=1, tokens=10,
        ...                created_at=0.0, expires_at=3600.0, verified_at=0.0)
        >>> CacheEntry.from_dict(e.to_dict()) == e
        True
    """

    cache_id: str
    fingerprint: str
    session_id: str
    family: str
    prefix_messages: int
    tokens: int
    created_at: float
    expires_at: float
    verified_at: float
    holders: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a JSON-serialisable dict.

        Example:
            >>> CacheEntry(cache_id="c", fingerprint="f", session_id="s", family="m",
            ...            prefix_messages=1, tokens=1, created_at=0, expires_at=1,
            ...            verified_at=0).to_dict()["cache_id"]
            'c'
        """
        data = asdict(self)
        data["holders"] = dict(self.holders)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheEntry:
        """Rebuild an entry from :meth:`to_dict` output.

        Args:
            data: The dict.

        Returns:
            The entry.

        Example:
            >>> CacheEntry.from_dict({"cache_id": "c", "fingerprint": "f", "session_id": "s",
            ...     "family": "m", "prefix_messages": 1, "tokens": 1, "created_at": 0,
            ...     "expires_at": 1, "verified_at": 0}).holders
            {}
        """
        return cls(
            cache_id=str(data["cache_id"]),
            fingerprint=str(data["fingerprint"]),
            session_id=str(data["session_id"]),
            family=str(data["family"]),
            prefix_messages=int(data["prefix_messages"]),
            tokens=int(data["tokens"]),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            verified_at=float(data["verified_at"]),
            holders=dict(data.get("holders") or {}),
        )

    def replace(self, **changes: Any) -> CacheEntry:
        """Return a copy with ``changes`` applied.

        Example:
            >>> CacheEntry(cache_id="c", fingerprint="f", session_id="s", family="m",
            ...            prefix_messages=1, tokens=1, created_at=0, expires_at=1,
            ...            verified_at=0).replace(tokens=5).tokens
            5
        """
        data = self.to_dict()
        data.update(changes)
        return CacheEntry.from_dict(data)


@runtime_checkable
class CacheRegistry(Protocol):
    """Where live explicit caches are recorded, keyed by session (and account/family).

    Example:
        >>> isinstance(InMemoryCacheRegistry(), CacheRegistry)
        True
    """

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry stored under ``key`` (``None`` if absent).

        Example:
            >>> InMemoryCacheRegistry().get("session-key") is None
            True
        """
        ...

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` (replacing any previous one).

        Example:
            >>> InMemoryCacheRegistry().put("k", CacheEntry(cache_id="c", fingerprint="f",
            ...     session_id="s", family="m", prefix_messages=1, tokens=1, created_at=0,
            ...     expires_at=1, verified_at=0))
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the entry under ``key`` (no error if absent).

        Example:
            >>> InMemoryCacheRegistry().delete("absent")
        """
        ...


class InMemoryCacheRegistry:
    """Process-local registry (the default): shared by models given the same instance.

    Example:
        >>> reg = InMemoryCacheRegistry()
        >>> e = CacheEntry(cache_id="c", fingerprint="f", session_id="s", family="m",
        ...                prefix_messages=1, tokens=1, created_at=0, expires_at=1,
        ...                verified_at=0)
        >>> reg.put("k", e); reg.get("k").cache_id
        'c'
        >>> reg.delete("k"); reg.get("k") is None
        True
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry under ``key`` or ``None``.

        Example:
            >>> InMemoryCacheRegistry().get("x") is None
            True
        """
        with self._lock:
            data = self._entries.get(key)
        return CacheEntry.from_dict(data) if data is not None else None

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key``.

        Example:
            >>> InMemoryCacheRegistry().put("k", CacheEntry(cache_id="c", fingerprint="f",
            ...     session_id="s", family="m", prefix_messages=1, tokens=1, created_at=0,
            ...     expires_at=1, verified_at=0))
        """
        with self._lock:
            self._entries[key] = entry.to_dict()

    def delete(self, key: str) -> None:
        """Remove the entry under ``key``.

        Example:
            >>> InMemoryCacheRegistry().delete("absent")
        """
        with self._lock:
            self._entries.pop(key, None)


class StoreCacheRegistry:
    """Registry kept in a LangGraph ``BaseStore`` (InMemoryStore, SqliteStore, Postgres...).

    Several models or worker processes pointing at the same store share one cache per
    session instead of creating one each.

    Args:
        store: Any ``langgraph.store.base.BaseStore``.
        namespace: Namespace of the entries (labels must not contain ``.``).

    Example:
        >>> from langgraph.store.memory import InMemoryStore
        >>> reg = StoreCacheRegistry(InMemoryStore())
        >>> reg.put("k", CacheEntry(cache_id="c", fingerprint="f", session_id="s",
        ...     family="m", prefix_messages=1, tokens=1, created_at=0, expires_at=1,
        ...     verified_at=0))
        >>> reg.get("k").cache_id
        'c'
    """

    def __init__(
        self, store: Any, *, namespace: tuple[str, ...] = ("kimi_context", "explicit_caches")
    ) -> None:
        if any("." in label or not label for label in namespace):
            msg = f"namespace labels must be non-empty and contain no '.' (got {namespace!r})"
            raise KimiConfigurationError(msg)
        self.store = store
        self.namespace = namespace

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry under ``key`` or ``None``.

        Example:
            >>> from langgraph.store.memory import InMemoryStore
            >>> StoreCacheRegistry(InMemoryStore()).get("x") is None
            True
        """
        item = self.store.get(self.namespace, key)
        if item is None:
            return None
        try:
            return CacheEntry.from_dict(item.value)
        except (KeyError, TypeError, ValueError):
            logger.warning("Ignoring malformed explicit-cache registry entry %r", key)
            return None

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key``.

        Example:
            >>> from langgraph.store.memory import InMemoryStore
            >>> StoreCacheRegistry(InMemoryStore()).put("k", CacheEntry(cache_id="c",
            ...     fingerprint="f", session_id="s", family="m", prefix_messages=1, tokens=1,
            ...     created_at=0, expires_at=1, verified_at=0))
        """
        self.store.put(self.namespace, key, entry.to_dict(), index=False)

    def delete(self, key: str) -> None:
        """Remove the entry under ``key``.

        Example:
            >>> from langgraph.store.memory import InMemoryStore
            >>> StoreCacheRegistry(InMemoryStore()).delete("absent")
        """
        self.store.delete(self.namespace, key)


_LIVE_EXPLICIT: weakref.WeakSet[ExplicitContextCache] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _close_all_at_exit() -> None:
    for manager in list(_LIVE_EXPLICIT):
        try:
            manager.close()
        except Exception:
            logger.debug("explicit cache cleanup at exit failed", exc_info=True)


def _register_atexit(manager: ExplicitContextCache) -> None:
    global _ATEXIT_REGISTERED
    with _ATEXIT_LOCK:
        _LIVE_EXPLICIT.add(manager)
        if not _ATEXIT_REGISTERED:
            atexit.register(_close_all_at_exit)
            _ATEXIT_REGISTERED = True


class _CacheAPIError(Exception):
    """A cache-API call failed (logged, never raised to the caller of a chat call)."""

    def __init__(self, what: str, status: int | None, detail: str) -> None:
        super().__init__(f"{what} failed (status {status}): {detail}")
        self.status = status


class ExplicitContextCache(_BaseStrategy):
    """Explicit Context Caching (moonshot-v1) following the project seed's design.

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

        Example:
            >>> from langchain_kimi_context.profiles import get_profile
            >>> c = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key=None,
            ...     profile=get_profile("moonshot-v1-128k"))
            >>> out = c.prepare({"model": "moonshot-v1-128k", "messages": [
            ...     {"role": "system", "content": "short"}]}, session_id="s")
            >>> "extra_headers" in out, c.last_decision.create
            (False, False)
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
        """Async :meth:`prepare` (cache-API calls run in a worker thread).

        Example:
            >>> import asyncio
            >>> from langchain_kimi_context.profiles import get_profile
            >>> c = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key=None,
            ...                          profile=get_profile("moonshot-v1-8k"))
            >>> asyncio.run(c.aprepare({"messages": []}, session_id="s"))
            {'messages': []}
        """
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

        Example:
            >>> from langchain_kimi_context.profiles import get_profile
            >>> c = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key=None,
            ...                          profile=get_profile("moonshot-v1-8k"))
            >>> c.record({"model": "moonshot-v1-8k"}, {"prompt_tokens": 5,
            ...     "completion_tokens": 1}, session_id="s")["kimi_cache"]["cache_id"]
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

        Example:
            >>> from langchain_kimi_context.profiles import get_profile
            >>> c = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key=None,
            ...                          profile=get_profile("moonshot-v1-8k"))
            >>> c.close(); c.close()
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
        """Async :meth:`close` (runs in a worker thread).

        Example:
            >>> import asyncio
            >>> from langchain_kimi_context.profiles import get_profile
            >>> c = ExplicitContextCache(base_url="http://127.0.0.1:9/v1", api_key=None,
            ...                          profile=get_profile("moonshot-v1-8k"))
            >>> asyncio.run(c.aclose())
        """
        await asyncio.to_thread(self.close)


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

    Example:
        >>> from types import SimpleNamespace
        >>> from langchain_kimi_context.profiles import get_profile
        >>> fake = SimpleNamespace(context_cache="auto", model_profile=get_profile("kimi-k2.6"))
        >>> type(make_cache_strategy(fake)).__name__
        'AutomaticPrefixCache'
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
