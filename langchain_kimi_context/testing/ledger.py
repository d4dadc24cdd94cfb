"""Billing ledger and request log of the emulator.

Every billable event (a chat completion, an explicit cache's creation, its storage
time, each call that uses it) becomes a :class:`LedgerEntry` in the account of the API
key that caused it, priced from the model profile (:class:`~langchain_kimi_context.
profiles.Pricing` and :class:`~langchain_kimi_context.profiles.ExplicitCachePricing`).

Pricing rules:

* chat: ``cached_tokens`` at the cache-hit price, the other prompt tokens at the
  cache-miss price, completion tokens (reasoning included) at the output price;
* explicit cache hit (header or message mode): the cached tokens are free, plus one
  ``cache_call`` entry at ``per_hit_call``;
* explicit cache creation: ``tokens`` at ``creation_per_m``; storage: ``tokens`` x
  minutes stored at ``storage_per_m_per_minute`` (settled on reads, updates, deletion
  and expiry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "LedgerAccount",
    "LedgerEntry",
    "LedgerKind",
    "RequestRecord",
    "key_hint",
]

LedgerKind = Literal["chat", "cache_create", "cache_storage", "cache_call", "web_search"]


def key_hint(api_key: str | None) -> str | None:
    """Return a non-secret hint of an API key (first 3 and last 4 characters).

    Args:
        api_key: The key, or ``None``.

    Returns:
        E.g. ``"sk-...1234"``; short keys are fully masked.
    """
    if api_key is None:
        return None
    if len(api_key) < 12:
        return "***"
    return f"{api_key[:3]}...{api_key[-4:]}"


@dataclass(frozen=True)
class LedgerEntry:
    """One billed event.

    Attributes:
        kind: ``chat``, ``cache_create``, ``cache_storage``, ``cache_call`` or
            ``web_search`` (the per-call fee of a builtin ``$web_search``).
        model: Model (or cache family) billed.
        cost: Amount in ``currency``.
        currency: Currency of ``cost``.
        time: Emulator clock time of the event.
        request_seq: Sequence number of the request in the log, when any.
        prompt_tokens: Prompt tokens (chat).
        cached_tokens: Prompt tokens served from a cache (chat).
        completion_tokens: Completion tokens, reasoning included (chat).
        reasoning_tokens: Reasoning tokens (chat).
        cache_id: The explicit cache involved, when any.
        cache_tokens: Tokens of that cache (creation/storage).
        minutes: Minutes of storage billed (storage).

    Example:
        >>> LedgerEntry(kind="chat", model="m", cost=0.5, currency="USD", time=0.0).cost
        0.5
    """

    kind: LedgerKind
    model: str
    cost: float
    currency: str
    time: float
    request_seq: int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_id: str | None = None
    cache_tokens: int = 0
    minutes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a JSON-compatible dict.

        Returns:
            The fields.
        """
        return asdict(self)


@dataclass(frozen=True)
class LedgerAccount:
    """A snapshot of one API key's bill.

    Attributes:
        api_key_hint: Non-secret hint of the key.
        entries: Every billed event, oldest first.

    Example:
        >>> acct = LedgerAccount("sk-...", (
        ...     LedgerEntry(kind="chat", model="m", cost=1.0, currency="USD", time=0,
        ...                 prompt_tokens=10, cached_tokens=4, completion_tokens=2),))
        >>> acct.prompt_tokens, acct.cache_miss_tokens, acct.cost("USD")
        (10, 6, 1.0)
    """

    api_key_hint: str | None
    entries: tuple[LedgerEntry, ...] = ()

    def _chat(self) -> Iterable[LedgerEntry]:
        return (e for e in self.entries if e.kind == "chat")

    @property
    def requests(self) -> int:
        """Number of billed chat completions."""
        return sum(1 for _ in self._chat())

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over all chat completions."""
        return sum(e.prompt_tokens for e in self._chat())

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens served from a cache over all chat completions."""
        return sum(e.cached_tokens for e in self._chat())

    @property
    def cache_miss_tokens(self) -> int:
        """Prompt tokens NOT served from a cache."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def completion_tokens(self) -> int:
        """Completion tokens (reasoning included) over all chat completions."""
        return sum(e.completion_tokens for e in self._chat())

    @property
    def reasoning_tokens(self) -> int:
        """Reasoning tokens over all chat completions."""
        return sum(e.reasoning_tokens for e in self._chat())

    @property
    def cost_by_currency(self) -> dict[str, float]:
        """Total cost per currency (token prices are USD, explicit-cache fees CNY)."""
        out: dict[str, float] = {}
        for e in self.entries:
            out[e.currency] = out.get(e.currency, 0.0) + e.cost
        return out

    def cost(self, currency: str = "USD", *, kinds: Iterable[LedgerKind] | None = None) -> float:
        """Return the total cost in ``currency`` (optionally only some entry kinds).

        Args:
            currency: Currency to sum.
            kinds: Restrict to these entry kinds.

        Returns:
            The sum of matching entries' costs.
        """
        wanted = set(kinds) if kinds is not None else None
        return float(
            sum(
                e.cost
                for e in self.entries
                if e.currency == currency and (wanted is None or e.kind in wanted)
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the account as a JSON-compatible dict (admin endpoint format).

        Returns:
            Totals and entries.
        """
        return {
            "api_key_hint": self.api_key_hint,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_miss_tokens": self.cache_miss_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_by_currency": self.cost_by_currency,
            "entries": [e.to_dict() for e in self.entries],
        }


@dataclass
class RequestRecord:
    """One HTTP request the emulator served (secrets redacted).

    Attributes:
        seq: 1-based sequence number since the last reset.
        time: Emulator clock time when it arrived.
        method: HTTP method.
        path: URL path (without the query string).
        query: Decoded query parameters.
        headers: Request headers; ``Authorization`` is redacted.
        body: Decoded JSON body (or ``None``).
        api_key_hint: Non-secret hint of the key used.
        status: HTTP status sent.
        response: JSON sent (for streams: the completion the chunks add up to).
        usage: ``usage`` of a chat completion.
        stream: Whether the reply was streamed.
        fault: Kind of the injected fault, if any.
        error_type: ``error.type`` of an error reply.
        model: The ``model`` of the request.

    Example:
        >>> RequestRecord(seq=1, time=0.0, method="GET", path="/v1/models").status
        0
    """

    seq: int
    time: float
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    api_key_hint: str | None = None
    status: int = 0
    response: Any = None
    usage: dict[str, Any] | None = None
    stream: bool = False
    fault: str | None = None
    error_type: str | None = None
    model: str | None = None

    @property
    def json(self) -> Any:
        """Alias of :attr:`body` (the request's JSON)."""
        return self.body

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-compatible dict (admin endpoint format).

        Returns:
            The fields.
        """
        return asdict(self)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return ``headers`` with credentials masked.

    Args:
        headers: Request headers.

    Returns:
        A copy; ``Authorization``/``api-key``-like values replaced by a hint.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in {"authorization", "proxy-authorization"}:
            scheme, _, token = value.partition(" ")
            out[name] = f"{scheme} {key_hint(token)}" if token else "***"
        elif lowered in {"api-key", "x-api-key", "cookie"}:
            out[name] = "***"
        else:
            out[name] = value
    return out
