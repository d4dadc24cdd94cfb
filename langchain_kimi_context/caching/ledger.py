"""Cost ledger: what each call and each session cost, cache hits and explicit-cache fees.

Contract: :class:`CostLedger` records one :class:`CallCost` per response (prompt tokens
split into cache hits and misses, output tokens, token cost in the profile's currency)
and the explicit cache's own events (creation, storage, per-hit fee), and sums them per
session into :class:`SessionCost`. Thread-safe; no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


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
        """Prompt tokens billed at the cache-miss price."""
        return max(0, self.prompt_tokens - self.cached_tokens)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (what goes into ``response_metadata``)."""
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
        """Prompt tokens billed at the miss price."""
        return max(0, self.prompt_tokens - self.cached_tokens)

    @property
    def cached_share(self) -> float:
        """Share of prompt tokens served from the cache (0.0 without calls)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def total(self, currency: str) -> float:
        """Token cost plus cache cost in ``currency`` (amounts in other currencies ignored).

        Args:
            currency: ISO code.

        Returns:
            The sum.
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
        """
        with self._lock:
            return [c for c in self._calls if session_id is None or c.session_id == session_id]

    def sessions(self) -> list[str]:
        """Return the ids of the sessions with calls or cache charges."""
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
        """
        return self._summarise(session_id, all_sessions=False)

    def total(self) -> SessionCost:
        """Return the totals over all sessions."""
        return self._summarise(None, all_sessions=True)

    def reset(self) -> None:
        """Forget every call and charge."""
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
