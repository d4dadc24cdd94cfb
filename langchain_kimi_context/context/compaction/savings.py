"""The savings ledger: what each compaction of a session has saved so far.

Contract (pure, no I/O): from the session's log, its compaction records and the model's
prices, return one entry per compaction (tokens before/after, model calls since, its
cost, its net saving so far) and the session totals.

Accounting, per compaction (prices per token: ``h`` hit, ``m`` miss, ``o`` output):

* it removed ``tokens_before - tokens_after`` tokens from every later request, which
  without it would have re-read them from the cache: each model call made after it (an
  assistant message after ``covered_until_id`` in the log) saves ``h`` per removed token;
* it cost its summary call (the request read at ``h`` in the cached-prefix form, at ``m``
  in the transcript form; the summary written at ``o``) plus one cache miss on the new
  prefix (``(m - h) * tokens_after``) on the next call.

``saved = calls_after * h * removed - cost``; it is negative right after a compaction
and turns positive after a handful of calls. Sizes are the package's estimates recorded
at compaction time, so the ledger is an estimate; the provider's bill is the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from langchain_kimi_context.context.compaction.records import RecordLike, as_records
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.profiles import Pricing

__all__ = ["CompactionSaving", "SavingsLedger", "savings_ledger"]

_PER_TOKEN = 1_000_000


@dataclass(frozen=True)
class CompactionSaving:
    """One compaction's line in the ledger.

    Attributes:
        record_id: The compaction record.
        trigger: Why it ran (``"budget"``, ``"ratio"``, ...).
        tokens_before: View size before.
        tokens_after: View size after.
        calls_after: Model calls made since (assistant messages after it in the log).
        cost: Its summary call plus the one cache miss on the new prefix.
        saved: Net saving so far: ``calls_after * hit * removed - cost``.
    """

    record_id: str
    trigger: str
    tokens_before: int
    tokens_after: int
    calls_after: int
    cost: float
    saved: float

    @property
    def removed(self) -> int:
        """Tokens the compaction took out of every later request."""
        return max(self.tokens_before - self.tokens_after, 0)


@dataclass(frozen=True)
class SavingsLedger:
    """A session's compactions and the money they saved so far.

    Attributes:
        entries: One line per compaction, oldest first.
        currency: Currency of every amount.
    """

    entries: tuple[CompactionSaving, ...]
    currency: str

    @property
    def compactions(self) -> int:
        """Number of compactions."""
        return len(self.entries)

    @property
    def saved(self) -> float:
        """Net money saved so far by all compactions."""
        return float(sum(e.saved for e in self.entries))

    @property
    def cost(self) -> float:
        """What the compactions themselves cost."""
        return float(sum(e.cost for e in self.entries))

    def to_dict(self) -> dict[str, Any]:
        """Return the ledger as plain JSON types (amounts rounded to 6 decimals)."""
        return {
            "compactions": self.compactions,
            "tokens_removed": sum(e.removed for e in self.entries),
            "cost": round(self.cost, 6),
            "saved": round(self.saved, 6),
            "currency": self.currency,
            "entries": [
                {
                    "record_id": e.record_id,
                    "trigger": e.trigger,
                    "tokens_before": e.tokens_before,
                    "tokens_after": e.tokens_after,
                    "calls_after": e.calls_after,
                    "cost": round(e.cost, 6),
                    "saved": round(e.saved, 6),
                }
                for e in self.entries
            ],
        }


def savings_ledger(
    messages: Sequence[BaseMessage], records: Sequence[RecordLike], pricing: Pricing
) -> SavingsLedger:
    """Build the savings ledger of a session.

    Args:
        messages: The session's full log (the records' anchors refer to it).
        records: Its compaction records (or their ``to_dict()`` forms), oldest first.
        pricing: The model's prices.

    Returns:
        The ledger.
    """
    h = pricing.input_cache_hit / _PER_TOKEN
    m = pricing.input_cache_miss / _PER_TOKEN
    o = pricing.output / _PER_TOKEN
    position = {message.id: i for i, message in enumerate(messages) if message.id}
    entries = []
    for record in as_records(records):
        covered = record.covered_until_id
        start = position.get(covered, len(messages) - 1) + 1 if covered else len(messages)
        calls = sum(1 for message in messages[start:] if isinstance(message, AIMessage))
        marker = get_marker(record.summary) if record.summary is not None else None
        summary_cost = 0.0
        if marker:
            read = int(marker.get("request_tokens") or marker.get("summarized_tokens") or 0)
            price = h if marker.get("request_form") == "cached_prefix" else m
            summary_cost = read * price + int(marker.get("summary_tokens") or 0) * o
        cost = summary_cost + (m - h) * record.tokens_after
        removed = max(record.tokens_before - record.tokens_after, 0)
        entries.append(
            CompactionSaving(
                record_id=record.record_id,
                trigger=record.trigger,
                tokens_before=record.tokens_before,
                tokens_after=record.tokens_after,
                calls_after=calls,
                cost=cost,
                saved=calls * h * removed - cost,
            )
        )
    return SavingsLedger(tuple(entries), pricing.currency)
