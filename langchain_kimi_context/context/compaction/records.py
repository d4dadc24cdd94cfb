"""Compaction records and ``apply_compactions``: what the model sees, rebuilt from the log.

A compaction never deletes anything. The full message log stays append-only; each
compaction produces a small, JSON-serialisable :class:`CompactionRecord` (an *anchor*):

* ``summary``: the summary message (a ``SystemMessage`` marked ``"summary"``), or
  ``None`` for a purely structural compaction;
* ``first_kept_id``: id of the first log message kept verbatim after the summary;
* ``pinned_ids``: earlier log messages also kept verbatim (the user message that opened
  the current turn, when the cut had to fall inside a long tool loop);
* ``replacements``: structural edits ``{message_id: replacement message}`` (cleared tool
  results, superseded file reads, collapsed code), same id as the original.

:func:`apply_compactions` is pure: ``view = system messages + latest summary + pinned +
log[first_kept:]`` with every replacement applied. Because the view only ever grows at
its end between two compactions, the request prefix (system + summary + kept turns) is
byte-stable and the provider's prefix cache keeps hitting after a compaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from langchain_kimi_context.context.compaction._common import ensure_message_ids, is_system
from langchain_kimi_context.context.markers import get_marker

__all__ = [
    "CompactionRecord",
    "CompactionRecordError",
    "RecordLike",
    "apply_compactions",
    "as_records",
]


class CompactionRecordError(ValueError):
    """A record does not fit the log it is applied to (e.g. a trimmed log).

    Example:
        >>> issubclass(CompactionRecordError, ValueError)
        True
    """


class CompactionRecord(BaseModel):
    """One compaction, as an anchor over the full (never modified) message log.

    Attributes:
        record_id: Deterministic id of the record.
        trigger: Why it ran: ``"ratio"``, ``"reserve"``, ``"absolute"``, ``"overflow"``,
            ``"manual"``, ...
        strategy: The strategies that changed something, ``"+"``-joined
            (e.g. ``"dedupe_file_reads+clear_tool_results+llm_summary"``).
        tokens_before: Tokens of the view before the compaction.
        tokens_after: Tokens of the view after it.
        ratio: ``tokens_before / tokens_after``.
        snapshot_id: Where the pre-compaction state can be found (a checkpoint id or an
            archive key given by the caller); ``None`` if the caller gave none.
        summary: The summary message (marked ``"summary"``), ``None`` when structural.
        first_kept_id: Id of the first log message kept verbatim after the summary
            (``None``: nothing was kept; messages after ``covered_until_id`` follow).
        pinned_ids: Ids of earlier log messages also kept verbatim, in log order.
        replacements: Structural edits ``{message_id: replacement}``.
        covered_until_id: Id of the last log message when the compaction ran (server
            usage reported on messages up to it describes the pre-compaction view).
        summary_model_calls: Calls made to the summariser (retries included).

    Example:
        >>> from langchain_core.messages import SystemMessage
        >>> rec = CompactionRecord(record_id="r1", trigger="manual", strategy="llm_summary",
        ...     tokens_before=400, tokens_after=100, ratio=4.0,
        ...     summary=SystemMessage("Previous context has been compacted.", id="s1"),
        ...     first_kept_id="m7")
        >>> CompactionRecord.from_dict(rec.to_dict()) == rec
        True
    """

    model_config = ConfigDict(frozen=True)

    record_id: str
    trigger: str
    strategy: str
    tokens_before: int
    tokens_after: int
    ratio: float
    snapshot_id: str | None = None
    summary: AnyMessage | None = None
    first_kept_id: str | None = None
    pinned_ids: tuple[str, ...] = ()
    replacements: dict[str, AnyMessage] = Field(default_factory=dict)
    covered_until_id: str | None = None
    summary_model_calls: int = 0

    @property
    def summary_ratio(self) -> float | None:
        """Compression of the summary: summarised tokens / summary tokens (``None`` if none).

        The summarised tokens are the transcript of the span (plus the earlier summary it
        folded in); ``ContextPolicy.compact_target_ratio`` (4:1) aims at this number.
        """
        if self.summary is None:
            return None
        marker = get_marker(self.summary) or {}
        before, after = marker.get("summarized_tokens"), marker.get("summary_tokens")
        if not before or not after:
            return None
        return round(before / after, 3)

    @property
    def summarized_refs(self) -> tuple[str, ...]:
        """Recall refs (log message ids) of the span the summary replaced, oldest first.

        Kept only for summaries made with ``ContextPolicy(recall=True)``; each reads back
        whole with ``read_history(ref)`` (empty otherwise).
        """
        marker = get_marker(self.summary) if self.summary is not None else None
        return tuple((marker or {}).get("summarized_ids") or ())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (``json.dumps`` works on it).

        Returns:
            The record as plain data.
        """
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompactionRecord:
        """Rebuild a record from :meth:`to_dict` output.

        Args:
            data: The plain-data record.

        Returns:
            The record.
        """
        return cls.model_validate(dict(data))

    @staticmethod
    def make_id(**parts: Any) -> str:
        """Return a deterministic record id from its defining parts.

        Args:
            **parts: JSON-serialisable values identifying the compaction.

        Returns:
            ``"cmp-<16 hex>"``.
        """
        raw = json.dumps(parts, sort_keys=True, default=str)
        return "cmp-" + hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:16]


def _index_of(log: Sequence[BaseMessage], message_id: str, record: CompactionRecord) -> int:
    for index, message in enumerate(log):
        if message.id == message_id:
            return index
    msg = (
        f"Compaction record {record.record_id} keeps messages from id {message_id!r}, which "
        f"is not in the log given to apply_compactions. Pass the full append-only log (not "
        f"a trimmed view) together with all its records."
    )
    raise CompactionRecordError(msg)


RecordLike = CompactionRecord | Mapping[str, Any]
"""A record or its ``to_dict()`` form (as stored in a LangGraph state channel)."""


def as_records(records: Sequence[RecordLike] | None) -> list[CompactionRecord]:
    """Return ``records`` as :class:`CompactionRecord` objects (dicts are parsed).

    Args:
        records: Records or their ``to_dict()`` forms, oldest first (``None`` = none).
    """
    return [
        r if isinstance(r, CompactionRecord) else CompactionRecord.from_dict(r)
        for r in records or ()
    ]


def apply_compactions(
    log: Sequence[BaseMessage], records: Sequence[RecordLike] | None
) -> list[BaseMessage]:
    """Rebuild what the model sees from the full log and the compaction records.

    The latest record with a summary is the anchor: the view is every system message of
    the log before its cut, then its summary, then its pinned messages, then the log from
    ``first_kept_id`` on. Structural replacements of all records are applied (later
    records win). Messages without ids get the deterministic ids of
    :func:`ensure_message_ids`. Pure: the log and its messages are not modified.

    Args:
        log: The full, append-only message log.
        records: The records (or their ``to_dict()`` forms), oldest first.

    Returns:
        The messages to send to the model.

    Raises:
        CompactionRecordError: If a record names a message that is not in ``log``.

    Example:
        >>> from langchain_core.messages import HumanMessage, AIMessage, SystemMessage
        >>> log = [SystemMessage("sys", id="s"), HumanMessage("old", id="1"),
        ...        AIMessage("old answer", id="2"), HumanMessage("new", id="3")]
        >>> rec = CompactionRecord(record_id="r", trigger="manual", strategy="llm_summary",
        ...     tokens_before=40, tokens_after=10, ratio=4.0,
        ...     summary=SystemMessage("Previous context has been compacted: old", id="sum"),
        ...     first_kept_id="3")
        >>> [m.id for m in apply_compactions(log, [rec])]
        ['s', 'sum', '3']
        >>> [m.id for m in apply_compactions(log, [])]
        ['s', '1', '2', '3']
    """
    messages = ensure_message_ids(log)
    replacements: dict[str, BaseMessage] = {}
    anchor: CompactionRecord | None = None
    for record in as_records(records):
        replacements.update(record.replacements)
        if record.summary is not None:
            anchor = record
    if anchor is None or anchor.summary is None:
        view = list(messages)
    else:
        if anchor.first_kept_id is not None:
            cut = _index_of(messages, anchor.first_kept_id, anchor)
        elif anchor.covered_until_id is not None:
            # everything up to the compaction was summarised; later messages follow
            cut = _index_of(messages, anchor.covered_until_id, anchor) + 1
        else:
            cut = len(messages)
        pinned = set(anchor.pinned_ids)
        head = [m for m in messages[:cut] if is_system(m)]
        kept = [m for m in messages[:cut] if m.id in pinned and not is_system(m)]
        view = [*head, anchor.summary, *kept, *messages[cut:]]
    if not replacements:
        return view
    return [replacements.get(m.id, m) if m.id else m for m in view]
