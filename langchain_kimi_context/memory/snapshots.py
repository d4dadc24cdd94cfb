"""Snapshots of sessions: take, list, roll back to, and share as a new session.

Contract:

* A snapshot names one checkpoint of a session's thread (a registry event, see
  :mod:`~langchain_kimi_context.memory.registry`); taking one copies nothing.
* :meth:`~SnapshotsMixin.rollback` writes a new head whose parent is the snapshot's
  checkpoint: later checkpoints and snapshots stay valid, so a rollback can be undone.
* :meth:`~SnapshotsMixin.share` copies the state at a snapshot (log, compaction
  records, usage) into a new session with the same tools; the two continue
  independently.
"""

from __future__ import annotations

from typing import Any

from langchain_kimi_context.memory.core import MemoryCore, exclusive
from langchain_kimi_context.memory.errors import (
    SnapshotSessionMismatchError,
    UnknownSnapshotError,
)
from langchain_kimi_context.memory.results import SnapshotInfo

__all__ = ["SnapshotsMixin"]


class SnapshotsMixin(MemoryCore):
    """The snapshot side of :class:`~langchain_kimi_context.RollingSnapshotMemory`."""

    def snapshot(self, session_id: str, name: str | None = None) -> str:
        """Snapshot the session: remember its current checkpoint (nothing is copied).

        Args:
            session_id: The session.
            name: Optional label shown by :meth:`list_snapshots`.

        Returns:
            The snapshot id (for :meth:`rollback` and :meth:`share`).

        Raises:
            SessionNotFoundError: Unknown session.
        """
        self._entry(session_id, live=False)
        return self.registry.register_snapshot(
            session_id, self._head(session_id), name=name, reason="manual"
        )

    def list_snapshots(self, session_id: str) -> list[SnapshotInfo]:
        """The snapshots of a session, oldest first (manual and automatic ones).

        Args:
            session_id: The session.

        Returns:
            Snapshot infos.
        """
        self._entry(session_id, live=False)
        snaps = [s for s in self.registry.view.snapshots.values() if s.session_id == session_id]
        return sorted(snaps, key=lambda s: s.created_at)

    def _snapshot_info(self, snapshot_id: str) -> SnapshotInfo:
        info = self.registry.load().snapshots.get(snapshot_id)
        if info is None:
            raise UnknownSnapshotError(snapshot_id)
        return info

    @exclusive
    def rollback(self, session_id: str, snapshot_id: str) -> None:
        """Return the session to a snapshot (a fork of its thread; nothing is deleted).

        Later checkpoints stay in the history and later snapshots stay valid, so a
        rollback can itself be undone.

        Args:
            session_id: The session.
            snapshot_id: A snapshot of THIS session.

        Raises:
            UnknownSnapshotError: The id is unknown.
            SnapshotSessionMismatchError: It belongs to another session.
        """
        self._entry(session_id)
        info = self._snapshot_info(snapshot_id)
        if info.session_id != session_id:
            raise SnapshotSessionMismatchError(
                snapshot_id, expected=session_id, actual=info.session_id
            )
        self._write(session_id, {"reports": {"rollback": {"to": snapshot_id}}}, info.checkpoint_id)

    def share(self, snapshot_id: str, *, session_id: str | None = None) -> str:
        """Fork a snapshot into a new session that others can continue independently.

        Args:
            snapshot_id: Any known snapshot.
            session_id: Id of the new session (generated when ``None``).

        Returns:
            The new session id (same system, tools, log and compaction records).

        Raises:
            UnknownSnapshotError: Unknown snapshot.
            SessionLimitError: The cap on live sessions is reached.
        """
        info = self._snapshot_info(snapshot_id)
        source = self._entry(info.session_id, live=False)
        tools = self._tools_for(source)
        graph = self._graph(tools)
        values = graph.get_state(self._config(info.session_id, info.checkpoint_id)).values or {}
        sid = self._claim_session_id(session_id)
        self._session_tools[sid] = dict(self._session_tools.get(info.session_id, {}))
        context = dict(values.get("context") or {})
        context["session_id"] = sid
        copied: dict[str, Any] = {
            "messages": list(values.get("messages") or []),
            "compactions": list(values.get("compactions") or []),
            "usage": dict(values.get("usage") or {}),
            "context": context,
        }
        config = graph.update_state(self._config(sid), copied, as_node="compact")
        self._record_create(
            sid, config, tools=source.tools, metadata=source.metadata, parent_snapshot=snapshot_id
        )
        return sid
