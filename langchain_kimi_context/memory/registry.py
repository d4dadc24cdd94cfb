"""The session registry: which sessions a memory namespace has, and their snapshots.

Contract:

* The registry of a namespace is an append-only list of small events (``create``,
  ``close``, ``delete``, ``snapshot``) kept in one thread of the sessions' own
  checkpointer, the thread :func:`registry_thread_id` names. Memories with the same
  checkpointer and namespace share it.
* :class:`RegistryView` is the fold of those events: live and closed sessions
  (:class:`SessionEntry`) and snapshots (:class:`~langchain_kimi_context.SnapshotInfo`).
  It is rebuilt from the events alone; reading it never writes.
* :class:`SessionRegistry` reads the events (:meth:`~SessionRegistry.load`, only the
  events it has not folded yet) and appends them (:meth:`~SessionRegistry.record`), one
  writer at a time across threads and processes (the store's thread guard, always queued).
* A snapshot is a registry event naming a checkpoint: taking one never copies history
  (:meth:`~SessionRegistry.register_snapshot`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from langchain_kimi_context import progress
from langchain_kimi_context.agent.concurrency import ThreadGuard
from langchain_kimi_context.agent.storage import records_channel
from langchain_kimi_context.memory.results import SnapshotInfo

__all__ = [
    "REGISTRY_PREFIX",
    "RegistryView",
    "SessionEntry",
    "SessionRegistry",
    "new_id",
    "registry_namespace",
    "registry_thread_id",
]

REGISTRY_PREFIX = "__kimi_memory_registry__"
"""Thread ids starting with this hold registries, not conversations."""

logger = logging.getLogger("langchain_kimi_context.memory")


def new_id(prefix: str) -> str:
    """A fresh id for a session, snapshot or message: ``<prefix>-<16 hex digits>``.

    Args:
        prefix: ``"sess"``, ``"snap"`` or ``"msg"``.

    Returns:
        The id.
    """
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def registry_thread_id(namespace: str) -> str:
    """The checkpointer thread that holds a namespace's registry.

    Args:
        namespace: The memory namespace.

    Returns:
        The thread id.
    """
    return f"{REGISTRY_PREFIX}:{namespace}"


def registry_namespace(thread_id: str) -> str | None:
    """The namespace whose registry a thread holds, or ``None`` for any other thread.

    Args:
        thread_id: A checkpointer thread id.

    Returns:
        The namespace, or ``None``.
    """
    prefix = registry_thread_id("")
    return thread_id[len(prefix) :] if thread_id.startswith(prefix) else None


@dataclass
class SessionEntry:
    """One session as the registry knows it.

    Attributes:
        session_id: The session (= LangGraph thread id).
        created_at: Unix time of its ``create`` event.
        tools: Names of its tools.
        closed: Whether ``close_session`` closed it.
        parent_snapshot: The snapshot it was shared from, if any.
        metadata: The metadata given to ``create_session``.
    """

    session_id: str
    created_at: float
    tools: list[str]
    closed: bool = False
    parent_snapshot: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegistryView:
    """The registry's events folded: sessions and snapshots.

    Attributes:
        sessions: Sessions by id (closed ones included, deleted ones not).
        snapshots: Snapshots by id.
        count: Events folded so far.
    """

    sessions: dict[str, SessionEntry] = field(default_factory=dict)
    snapshots: dict[str, SnapshotInfo] = field(default_factory=dict)
    count: int = 0

    def live_sessions(self) -> int:
        """Sessions not closed.

        Returns:
            Their number.
        """
        return sum(1 for e in self.sessions.values() if not e.closed)

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event into the view.

        Args:
            event: A registry event (``op`` ``create``, ``close``, ``delete`` or
                ``snapshot``; others are counted and ignored).
        """
        self.count += 1
        op = event.get("op")
        if op == "create":
            sid = str(event["session"])
            self.sessions[sid] = SessionEntry(
                session_id=sid,
                created_at=float(event.get("at", 0.0)),
                tools=list(event.get("tools") or []),
                parent_snapshot=event.get("parent_snapshot"),
                metadata=dict(event.get("metadata") or {}),
            )
            if event.get("snapshot_id"):
                self._snapshot(event, "created")
        elif op == "close":
            entry = self.sessions.get(str(event["session"]))
            if entry is not None:
                entry.closed = True
        elif op == "delete":
            sid = str(event["session"])
            self.sessions.pop(sid, None)
            for key in [k for k, v in self.snapshots.items() if v.session_id == sid]:
                del self.snapshots[key]
        elif op == "snapshot":
            self._snapshot(event, str(event.get("reason") or "manual"))

    def _snapshot(self, event: Mapping[str, Any], reason: str) -> None:
        sid = str(event["snapshot_id"])
        self.snapshots[sid] = SnapshotInfo(
            snapshot_id=sid,
            session_id=str(event["session"]),
            checkpoint_id=str(event["checkpoint_id"]),
            name=event.get("name"),
            reason=reason,
            created_at=float(event.get("at", 0.0)),
        )


class _RegistryChannels(TypedDict, total=False):
    events: Annotated[list[Any], records_channel(256)]


def _registry_noop(state: _RegistryChannels) -> dict[str, Any]:
    return {}


class SessionRegistry:
    """The registry of one namespace on a checkpointer (see the module docstring).

    Args:
        checkpointer: The sessions' checkpointer.
        namespace: The namespace ("account").
        guard: The store's thread guard (serialises writers across processes).
        busy_timeout_s: How long a write waits for another writer.
    """

    def __init__(
        self,
        checkpointer: BaseCheckpointSaver[Any],
        namespace: str,
        *,
        guard: ThreadGuard,
        busy_timeout_s: float,
    ) -> None:
        self.namespace = namespace
        self.guard = guard
        self.busy_timeout_s = busy_timeout_s
        graph = StateGraph(_RegistryChannels)
        graph.add_node("registry", _registry_noop)
        graph.add_edge(START, "registry")
        graph.add_edge("registry", END)
        self._graph = graph.compile(checkpointer=checkpointer)
        self._config: RunnableConfig = {
            "configurable": {"thread_id": registry_thread_id(namespace)}
        }
        self._view = RegistryView()
        self._lock = threading.RLock()

    @property
    def thread_id(self) -> str:
        """The checkpointer thread holding the events."""
        return registry_thread_id(self.namespace)

    @property
    def view(self) -> RegistryView:
        """The view as last loaded (no read of the store; :meth:`load` refreshes it)."""
        return self._view

    def load(self) -> RegistryView:
        """Fold the events written since the last load (by any process) and return the view.

        Returns:
            The up-to-date view.
        """
        state = self._graph.get_state(self._config)
        events = list((state.values or {}).get("events") or [])
        if len(events) < self._view.count:
            self._view = RegistryView()
        for event in events[self._view.count :]:
            self._view.apply(event)
        return self._view

    def record(self, event: Mapping[str, Any]) -> None:
        """Append one event (stamped with the time when it has no ``at``) and reload.

        Args:
            event: The event.
        """
        stamped = dict(event)
        stamped.setdefault("at", time.time())
        # one writer at a time (threads and processes): no sibling registry checkpoints;
        # always queued (a short write), whatever the sessions' multitask strategy
        queued = self.guard.hold(self.thread_id, "enqueue", self.busy_timeout_s)
        with self._lock, queued:
            self._graph.update_state(self._config, {"events": [stamped]}, as_node="registry")
            self.load()

    def register_snapshot(
        self, session_id: str, checkpoint_id: str, *, name: str | None, reason: str
    ) -> str:
        """Record a snapshot of a session at one of its checkpoints (nothing is copied).

        Args:
            session_id: The session.
            checkpoint_id: The checkpoint the snapshot names.
            name: Optional label.
            reason: Why it was taken (see :class:`~langchain_kimi_context.SnapshotInfo`).

        Returns:
            The new snapshot id.
        """
        snapshot_id = new_id("snap")
        self.record(
            {
                "op": "snapshot",
                "session": session_id,
                "snapshot_id": snapshot_id,
                "checkpoint_id": checkpoint_id,
                "name": name,
                "reason": reason,
            }
        )
        progress.report(
            logger,
            "snapshot",
            "snapshot %s of session %s (%s) at checkpoint %s",
            snapshot_id,
            session_id,
            reason,
            checkpoint_id,
            thread_id=session_id,
            checkpoint_id=checkpoint_id,
            snapshot_id=snapshot_id,
            reason=reason,
        )
        return snapshot_id
