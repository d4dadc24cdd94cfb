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

__all__ = ["CompactionRecord", "CompactionRecordError", "apply_compactions"]


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
        first_kept_id: Id of the first log message kept verbatim after the summary.
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

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (``json.dumps`` works on it).

        Returns:
            The record as plain data.

        Example:
            >>> rec = CompactionRecord(record_id="r", trigger="manual", strategy="x",
            ...     tokens_before=2, tokens_after=1, ratio=2.0)
            >>> rec.to_dict()["ratio"]
            2.0
        """
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompactionRecord:
        """Rebuild a record from :meth:`to_dict` output.

        Args:
            data: The plain-data record.

        Returns:
            The record.

        Example:
            >>> rec = CompactionRecord(record_id="r", trigger="manual", strategy="x",
            ...     tokens_before=2, tokens_after=1, ratio=2.0)
            >>> CompactionRecord.from_dict(rec.to_dict()).record_id
            'r'
        """
        return cls.model_validate(dict(data))

    @staticmethod
    def make_id(**parts: Any) -> str:
        """Return a deterministic record id from its defining parts.

        Args:
            **parts: JSON-serialisable values identifying the compaction.

        Returns:
            ``"cmp-<16 hex>"``.

        Example:
            >>> CompactionRecord.make_id(a=1) == CompactionRecord.make_id(a=1)
            True
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


def apply_compactions(
    log: Sequence[BaseMessage], records: Sequence[CompactionRecord]
) -> list[BaseMessage]:
    """Rebuild what the model sees from the full log and the compaction records.

    The latest record with a summary is the anchor: the view is every system message of
    the log before its cut, then its summary, then its pinned messages, then the log from
    ``first_kept_id`` on. Structural replacements of all records are applied (later
    records win). Messages without ids get the deterministic ids of
    :func:`ensure_message_ids`. Pure: the log and its messages are not modified.

    Args:
        log: The full, append-only message log.
        records: The records, oldest first.

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
    for record in records:
        replacements.update(record.replacements)
        if record.summary is not None:
            anchor = record
    if anchor is None or anchor.summary is None:
        view = list(messages)
    else:
        cut = (
            len(messages)
            if anchor.first_kept_id is None
            else _index_of(messages, anchor.first_kept_id, anchor)
        )
        pinned = set(anchor.pinned_ids)
        head = [m for m in messages[:cut] if is_system(m)]
        kept = [m for m in messages[:cut] if m.id in pinned and not is_system(m)]
        view = [*head, anchor.summary, *kept, *messages[cut:]]
    if not replacements:
        return view
    return [replacements.get(m.id, m) if m.id else m for m in view]
