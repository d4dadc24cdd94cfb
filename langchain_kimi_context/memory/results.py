"""The results and reports :class:`~langchain_kimi_context.RollingSnapshotMemory` returns.

Contract:

* Frozen dataclasses, plain values only (ids, counts, tokens, money), so a result can be
  logged, compared and kept after the memory is gone.
* ``SnapshotInfo`` is also the registry's record of a snapshot
  (:mod:`~langchain_kimi_context.memory.registry`).
* Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_kimi_context.context.compaction.savings import SavingsLedger

__all__ = [
    "CompressResult",
    "SessionUsage",
    "SnapshotInfo",
    "SubtaskResult",
    "TruncateResult",
]


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a session (a checkpoint of its thread).

    Attributes:
        snapshot_id: The id to pass to ``rollback``/``share``.
        session_id: The session it belongs to.
        checkpoint_id: The LangGraph checkpoint id.
        name: Optional name given to ``snapshot``.
        reason: ``"created"``, ``"manual"``, ``"threshold"``, ``"compaction"``,
            ``"truncate"``, ``"compress"`` or ``"before_turn"``.
        created_at: Unix time.

    Example:
        >>> SnapshotInfo("snap-1", "s", "ck", None, "manual", 0.0).reason
        'manual'
    """

    snapshot_id: str
    session_id: str
    checkpoint_id: str
    name: str | None
    reason: str
    created_at: float


@dataclass(frozen=True)
class TruncateResult:
    """What ``truncate`` did.

    Attributes:
        changed: Whether the head was dropped (``False``: everything already fits).
        snapshot_id: Snapshot of the state before the truncation (``None`` if unchanged).
        dropped_messages: Messages no longer sent to the model.
        kept_messages: Non-system messages kept.
        tokens_before: Tokens of the view before.
        tokens_after: Tokens of the view after.

    Example:
        >>> TruncateResult(False, None, 0, 3, 100, 100).changed
        False
    """

    changed: bool
    snapshot_id: str | None
    dropped_messages: int
    kept_messages: int
    tokens_before: int
    tokens_after: int


@dataclass(frozen=True)
class CompressResult:
    """What ``compress`` did.

    Attributes:
        changed: Whether a summary was stored.
        snapshot_id: Snapshot of the state before the compression.
        tokens_before: Tokens of the view before.
        tokens_after: Tokens of the view after.
        ratio: ``tokens_before / tokens_after``.
        record_id: The stored compaction record, if any.
        failures: Summariser failures (a failed summary is never stored).

    Example:
        >>> CompressResult(True, "snap-1", 400, 100, 4.0, "cmp-1", ()).ratio
        4.0
    """

    changed: bool
    snapshot_id: str | None
    tokens_before: int
    tokens_after: int
    ratio: float
    record_id: str | None
    failures: tuple[str, ...]


@dataclass(frozen=True)
class SessionUsage:
    """Tokens, cost, compactions and snapshots of a session.

    Attributes:
        calls: Model calls made in the session (summaries excluded).
        input_tokens: Prompt tokens billed over all calls.
        cached_tokens: Of those, served from the context cache.
        output_tokens: Completion tokens over all calls.
        total_tokens: ``input_tokens + output_tokens``.
        cost: Estimated cost from the model's prices.
        currency: Currency of ``cost``.
        context_tokens: Size of what the model would see next (calibrated estimate).
        context_by_role: ``context_tokens`` split by role (``system``, ``user``,
            ``assistant``, ``tool``; tools' schemas under ``tools``).
        log_messages: Messages in the full, append-only log.
        view_messages: Messages the model would see next.
        compactions: Compaction/truncation records stored.
        snapshots: Snapshots of the session.
        context_window: The window the session's next call is checked against (the
            policy's, else the model's, a window learned from the server included).
        savings: The savings ledger: per compaction, tokens before/after and the
            money it saved so far at the model's prices.

    Example:
        >>> SessionUsage(1, 10, 0, 5, 15, 0.0, "USD", 12, {"user": 12}, 2, 2, 0, 1).total_tokens
        15
    """

    calls: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float
    currency: str
    context_tokens: int
    context_by_role: dict[str, int]
    log_messages: int
    view_messages: int
    compactions: int
    snapshots: int
    context_window: int = 0
    savings: SavingsLedger | None = None


@dataclass(frozen=True)
class SubtaskResult:
    """Result of :meth:`RollingSnapshotMemory.run_subtask`.

    Attributes:
        session_id: The subtask's own session.
        result: The subtask's final answer (text).
        usage: Its usage.

    Example:
        >>> SubtaskResult("s", "done", None).result
        'done'
    """

    session_id: str
    result: str
    usage: SessionUsage | None
