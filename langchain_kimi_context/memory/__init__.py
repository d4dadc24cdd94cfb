"""``RollingSnapshotMemory``: client-side Kimi sessions with snapshots, on the graph's checkpoints.

The real Kimi API has no server-side sessions, so this package provides them
client-side (``create_session``, ``append_message``, ``truncate``, ``snapshot``,
``compress`` and a rolling-snapshot ``chat`` loop) as a THIN FACE over
:func:`~langchain_kimi_context.agent.create_kimi_agent`:

* a session is a LangGraph thread of the agent graph (session id = thread id), on the
  same checkpointer (default: the graph's embedded SQLite file);
* ``chat`` is one ``graph.invoke``: preflight, the pipeline stages (sanitize, repair,
  limit, repair after a cut, truncate: ``PIPELINE_STAGES``), call (retries + overflow
  recovery), tools, maybe-compact: the graph's nodes, nothing else;
* a snapshot is a checkpoint id (taking one writes one tiny registry event, it never
  copies the history); ``rollback`` forks the thread from that checkpoint; ``share``
  copies the state at a checkpoint into a new thread;
* ``truncate`` and ``compress`` append a
  :class:`~langchain_kimi_context.CompactionRecord` next to the append-only log, so what
  the model sees shrinks while the record stays recoverable;
* the session registry (live sessions, snapshot names) is an append-only event list in
  a small thread of the same checkpointer.

Modules (one concern each): ``errors`` (the session API's exceptions), ``results``
(what the methods return), ``registry`` (the session registry, public API), ``core``
(shared configuration and plumbing), ``maintenance`` (``maintain``, ``truncate``,
``compress``), ``snapshots`` (snapshot, rollback, share), ``turns`` (appends and
``chat``), ``session`` (the :class:`RollingSnapshotMemory` face). Every public name is
importable from this package.

Example:
    >>> import os, tempfile
    >>> from langchain_kimi_context import RollingSnapshotMemory
    >>> memory = RollingSnapshotMemory(
    ...     "kimi-k2.6", api_key="sk-test", db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
    >>> sid = memory.create_session(system="You are a careful refactoring assistant.")
    >>> snap = memory.snapshot(sid, name="start")
    >>> _ = memory.append_message(sid, "Decision: keep the public API stable.")
    >>> [m.type for m in memory.messages(sid)]
    ['system', 'human']
    >>> memory.rollback(sid, snap)
    >>> [m.type for m in memory.messages(sid)]
    ['system']
"""

from __future__ import annotations

from langchain_kimi_context.memory.errors import (
    AppendTooLargeError,
    KimiSessionError,
    PreserveTooSmallError,
    SessionClosedError,
    SessionExistsError,
    SessionLimitError,
    SessionNotFoundError,
    SessionTurnError,
    SnapshotSessionMismatchError,
    UnknownSnapshotError,
)
from langchain_kimi_context.memory.results import (
    CompressResult,
    SessionUsage,
    SnapshotInfo,
    SubtaskResult,
    TruncateResult,
)
from langchain_kimi_context.memory.session import RollingSnapshotMemory

__all__ = [
    "AppendTooLargeError",
    "CompressResult",
    "KimiSessionError",
    "PreserveTooSmallError",
    "RollingSnapshotMemory",
    "SessionClosedError",
    "SessionExistsError",
    "SessionLimitError",
    "SessionNotFoundError",
    "SessionTurnError",
    "SessionUsage",
    "SnapshotInfo",
    "SnapshotSessionMismatchError",
    "SubtaskResult",
    "TruncateResult",
    "UnknownSnapshotError",
]
