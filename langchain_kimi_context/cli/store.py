"""``ThreadStore``: the threads of a checkpoint database, read and edited for the CLI.

Contract:

* Opens the package's SQLite checkpoint file (never creating one: a missing file, a
  directory, a file that is not SQLite, a SQLite file without LangGraph checkpoints and a
  locked database are each a :class:`ThreadStoreError` with a one-line message) or a
  PostgreSQL DSN (extra ``postgres``).
* Reads threads through the agent graph (``create_kimi_agent(...).get_state``), so the
  delta channels are rebuilt exactly as the agent sees them (threads of
  ``langchain.agents.create_agent`` with ``KimiContextMiddleware`` read too: usage from
  the replies, records from the middleware's key); sessions of
  :class:`~langchain_kimi_context.RollingSnapshotMemory` (and their snapshots) through the
  memory's registry. The model of those objects is a stub that is never called: the
  store needs no API key and never handles one.
* Writes (rollback, fork) go through the same graph and memory APIs the package uses:
  a rollback writes a new head whose parent is the target checkpoint (nothing deleted),
  a fork copies the state at a checkpoint into a new thread.
* Only the list of thread ids comes from SQL: LangGraph's saver API has no thread listing.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver

from langchain_kimi_context.agent.graph import create_kimi_agent
from langchain_kimi_context.agent.inputs import thread_config
from langchain_kimi_context.agent.storage import (
    DB_ENV_VAR,
    KimiSqliteSaver,
    default_checkpoint_path,
)
from langchain_kimi_context.context.messages import is_user_turn
from langchain_kimi_context.memory import RollingSnapshotMemory, SnapshotInfo
from langchain_kimi_context.memory.registry import SessionEntry, registry_namespace
from langchain_kimi_context.middleware import RECORDS_KEY as MIDDLEWARE_RECORDS_KEY
from langchain_kimi_context.profiles import DEFAULT_MODEL, get_profile
from langchain_kimi_context.usage import add_usage, usage_cost

__all__ = ["SnapshotRow", "ThreadDetail", "ThreadStore", "ThreadStoreError", "ThreadSummary"]

_BUSY_TIMEOUT_S = 2.0


class ThreadStoreError(Exception):
    """A one-line, user-facing error of the thread store (the CLI exits with code 2)."""


@dataclass(frozen=True)
class ThreadSummary:
    """One row of ``threads list``.

    Attributes:
        thread_id: The LangGraph thread id (= the session id of a memory session).
        kind: ``"session"`` (a RollingSnapshotMemory session) or ``"thread"``.
        turns: User turns in the full log.
        messages: Messages in the full log.
        updated: UTC time of the newest checkpoint (ISO 8601).
        calls: Model calls recorded in the thread's usage.
        cost: Cost of those calls.
        currency: Currency of ``cost``.
    """

    thread_id: str
    kind: str
    turns: int
    messages: int
    updated: str
    calls: int
    cost: float
    currency: str


@dataclass(frozen=True)
class SnapshotRow:
    """A point a thread can be rolled back to or forked from.

    Attributes:
        snapshot_id: The memory snapshot id, or the checkpoint id for plain threads.
        checkpoint_id: The checkpoint it points at.
        name: Its label, if any.
        reason: Why it was taken (``created``, ``manual``, ``pre-compact``...).
        created: UTC time (ISO 8601).
    """

    snapshot_id: str
    checkpoint_id: str
    name: str | None
    reason: str
    created: str


@dataclass(frozen=True)
class ThreadDetail:
    """Everything ``threads show`` prints about one thread.

    Attributes:
        summary: The list row.
        usage: Token usage (``input_tokens``, ``cache_read_tokens``, ``output_tokens``...).
        compactions: The compaction records (as stored, JSON-compatible).
        snapshots: Memory snapshots of the session (empty for plain threads).
        messages: The full, append-only log (not the compacted view).
        model: The model of the last reply, if any.
    """

    summary: ThreadSummary
    usage: dict[str, Any]
    compactions: list[dict[str, Any]]
    snapshots: list[SnapshotRow]
    messages: list[BaseMessage] = field(repr=False)
    model: str | None


def _iso(value: str | float | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float | int):
        stamp = datetime.fromtimestamp(value, tz=UTC)
    else:
        stamp = datetime.fromisoformat(value).astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


class _StubModel(GenericFakeChatModel):
    """Stands in for the chat model: the store reads and copies checkpoints, never calls."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


def _stub_model() -> GenericFakeChatModel:
    return _StubModel(messages=iter(()))


def _stub_tool(name: str) -> BaseTool:
    def unavailable(**_: Any) -> str:
        raise ThreadStoreError(f"tool {name!r} cannot run from the command line")

    return StructuredTool.from_function(
        func=unavailable, name=name, description=f"Stand-in for {name} (never run)."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_postgres(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def _sqlite_error(path: Path, exc: sqlite3.Error) -> ThreadStoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return ThreadStoreError(
            f"{path}: the database is locked by another process; retry when it is idle"
        )
    if "not a database" in text or "malformed" in text or "encrypted" in text:
        return ThreadStoreError(f"{path} is not a SQLite database ({text})")
    return ThreadStoreError(f"{path}: cannot read the database ({text})")


class ThreadStore:
    """The threads of one checkpoint database (SQLite file or PostgreSQL DSN).

    Args:
        target: A SQLite path or a ``postgresql://`` DSN; ``None`` = ``$KIMI_CONTEXT_DB``,
            else the package's default checkpoint file.

    Raises:
        ThreadStoreError: The database is missing, unreadable, locked or not a
            checkpoint database.
    """

    def __init__(self, target: str | os.PathLike[str] | None = None) -> None:
        self._pg_conn: Any = None
        self._sqlite: sqlite3.Connection | None = None
        raw = str(target) if target is not None else os.environ.get(DB_ENV_VAR) or ""
        self.label = raw if raw else str(default_checkpoint_path())
        if _is_postgres(self.label):
            self.saver = self._open_postgres(self.label)
            self.label = "postgresql database"  # a DSN may carry a password: never shown
        else:
            self.path = Path(self.label).expanduser()
            self.saver = self._open_sqlite(self.path, explicit=bool(raw))
        self.graph = create_kimi_agent(_stub_model(), [], checkpointer=self.saver, name="kimi_cli")
        self._memories: dict[tuple[str, tuple[str, ...]], RollingSnapshotMemory] = {}

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _open_sqlite(path: Path, *, explicit: bool) -> KimiSqliteSaver:
        origin = "--db" if explicit else f"${DB_ENV_VAR} / the default path"
        if not path.exists():
            raise ThreadStoreError(
                f"no checkpoint database at {path} ({origin}); pass --db PATH, set "
                f"{DB_ENV_VAR}, or a postgresql:// DSN"
            )
        if path.is_dir():
            raise ThreadStoreError(f"{path} is a directory, not a checkpoint database")
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(path))}?mode=rw",
                uri=True,
                timeout=_BUSY_TIMEOUT_S,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise _sqlite_error(path, exc) from exc
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "checkpoints" not in tables:
                raise ThreadStoreError(
                    f"{path} is a SQLite database without LangGraph checkpoints "
                    "(no 'checkpoints' table)"
                )
            saver = KimiSqliteSaver(conn)
            saver.setup()
        except sqlite3.Error as exc:
            conn.close()
            raise _sqlite_error(path, exc) from exc
        except ThreadStoreError:
            conn.close()
            raise
        return saver

    def _open_postgres(self, dsn: str) -> BaseCheckpointSaver[Any]:
        try:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise ThreadStoreError(
                'a postgresql:// DSN needs the postgres extra: pip install "'
                'langchain-kimi-context[postgres]"'
            ) from exc
        try:
            conn = psycopg.connect(
                dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=5
            )
            saver = PostgresSaver(conn)
            saver.setup()
        except psycopg.Error as exc:
            raise ThreadStoreError(
                f"cannot open the PostgreSQL database: {_first_line(exc)}"
            ) from exc
        self._pg_conn = conn
        return saver

    def close(self) -> None:
        """Close the database connection."""
        if self._pg_conn is not None:
            self._pg_conn.close()
        elif isinstance(self.saver, KimiSqliteSaver):
            self.saver.conn.close()

    def __enter__(self) -> ThreadStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def _sql(self, query: str) -> list[tuple[Any, ...]]:
        if self._pg_conn is not None:
            return [tuple(row.values()) for row in self._pg_conn.execute(query).fetchall()]
        try:
            assert isinstance(self.saver, KimiSqliteSaver)
            with self.saver.lock:
                return list(self.saver.conn.execute(query).fetchall())
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc) from exc

    def _all_thread_ids(self) -> list[str]:
        rows = self._sql(
            "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = '' ORDER BY thread_id"
        )
        return [str(r[0]) for r in rows]

    def _namespaces(self) -> list[str]:
        return [ns for t in self._all_thread_ids() if (ns := registry_namespace(t)) is not None]

    def _memory(self, namespace: str, tools: Sequence[str] = ()) -> RollingSnapshotMemory:
        key = (namespace, tuple(sorted(tools)))
        memory = self._memories.get(key)
        if memory is None:
            memory = RollingSnapshotMemory(
                _stub_model(),
                checkpointer=self.saver,
                namespace=namespace,
                tools=[_stub_tool(t) for t in key[1]],
            )
            self._memories[key] = memory
        return memory

    def _session(self, thread_id: str) -> tuple[str, SessionEntry] | None:
        """The memory namespace and registry entry of a session, if it is one."""
        for namespace in self._namespaces():
            entry = self._memory(namespace).registry.load().sessions.get(thread_id)
            if entry is not None:
                return namespace, entry
        return None

    _config = staticmethod(thread_config)

    def _state(self, thread_id: str, checkpoint_id: str | None = None) -> Any:
        try:
            snapshot = self.graph.get_state(self._config(thread_id, checkpoint_id))
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc) from exc
        if not snapshot.created_at:
            if checkpoint_id:
                raise ThreadStoreError(f"thread {thread_id!r} has no checkpoint {checkpoint_id!r}")
            raise ThreadStoreError(
                f"no thread {thread_id!r} in {self.label}; `kimi-context threads list` shows them"
            )
        return snapshot

    @staticmethod
    def _usage(values: Mapping[str, Any], log: Sequence[BaseMessage]) -> dict[str, Any]:
        """The thread's usage; threads of other agents (no ``usage`` key): from the replies."""
        usage = dict(values.get("usage") or {})
        if usage:
            return usage
        for message in log:
            if isinstance(message, AIMessage) and message.usage_metadata:
                usage = add_usage(usage, message)
        return usage

    def _compactions(self, thread_id: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Compaction records: the agent's ``compactions``, else the middleware's key."""
        records = values.get("compactions")
        if not records:
            tup = self.saver.get_tuple(self._config(thread_id))
            channels = tup.checkpoint.get("channel_values", {}) if tup is not None else {}
            records = channels.get(MIDDLEWARE_RECORDS_KEY)
        return [dict(r) for r in records or []]

    def _summary(self, thread_id: str, snapshot: Any, *, kind: str) -> ThreadSummary:
        values = snapshot.values or {}
        log: list[BaseMessage] = list(values.get("messages") or [])
        usage = self._usage(values, log)
        return ThreadSummary(
            thread_id=thread_id,
            kind=kind,
            turns=sum(1 for m in log if is_user_turn(m)),
            messages=len(log),
            updated=_iso(snapshot.created_at),
            calls=int(usage.get("calls", 0)),
            cost=round(self._cost(usage, log), 6),
            currency=get_profile(self._model(log) or DEFAULT_MODEL).pricing.currency,
        )

    @staticmethod
    def _model(log: Sequence[BaseMessage]) -> str | None:
        for message in reversed(log):
            if isinstance(message, AIMessage):
                name = (message.response_metadata or {}).get("model_name")
                if name:
                    return str(name)
        return None

    def _cost(self, usage: Mapping[str, Any], log: Sequence[BaseMessage]) -> float:
        return usage_cost(usage, get_profile(self._model(log) or DEFAULT_MODEL).pricing)

    def list_threads(self) -> list[ThreadSummary]:
        """Every conversation thread, most recently updated first.

        Returns:
            One summary per thread (memory registries are not listed).
        """
        sessions = {
            s for ns in self._namespaces() for s in self._memory(ns).registry.load().sessions
        }
        rows = []
        for thread_id in self._all_thread_ids():
            if registry_namespace(thread_id) is not None:
                continue
            kind = "session" if thread_id in sessions else "thread"
            rows.append(self._summary(thread_id, self._state(thread_id), kind=kind))
        return sorted(rows, key=lambda r: (r.updated, r.thread_id), reverse=True)

    def _snapshots(
        self, thread_id: str, session: tuple[str, SessionEntry] | None
    ) -> list[SnapshotRow]:
        if session is None:
            return []
        infos: list[SnapshotInfo] = self._memory(session[0]).list_snapshots(thread_id)
        return [
            SnapshotRow(i.snapshot_id, i.checkpoint_id, i.name, i.reason, _iso(i.created_at))
            for i in infos
        ]

    def show(self, thread_id: str) -> ThreadDetail:
        """Everything about one thread.

        Args:
            thread_id: The thread.

        Returns:
            Its summary, usage, compactions, snapshots and full log.

        Raises:
            ThreadStoreError: Unknown thread.
        """
        snapshot = self._state(thread_id)
        session = self._session(thread_id)
        values = snapshot.values or {}
        log = list(values.get("messages") or [])
        return ThreadDetail(
            summary=self._summary(thread_id, snapshot, kind="session" if session else "thread"),
            usage=self._usage(values, log),
            compactions=self._compactions(thread_id, values),
            snapshots=self._snapshots(thread_id, session),
            messages=log,
            model=self._model(log),
        )

    def messages(self, thread_id: str) -> list[BaseMessage]:
        """The full, append-only log of a thread (not the compacted view).

        Args:
            thread_id: The thread.

        Returns:
            Every message, oldest first.
        """
        return list((self._state(thread_id).values or {}).get("messages") or [])

    # ------------------------------------------------------------------ writing
    def _resolve(self, thread_id: str, ref: str) -> tuple[str, str | None]:
        """Resolve a snapshot id, snapshot name or checkpoint id to (checkpoint, snapshot)."""
        session = self._session(thread_id)
        for row in self._snapshots(thread_id, session):
            if ref in (row.snapshot_id, row.name):
                return row.checkpoint_id, row.snapshot_id
        if ref.startswith("snap-") and session is None:
            raise ThreadStoreError(f"thread {thread_id!r} is not a memory session: no {ref!r}")
        if ref.startswith("snap-"):
            raise ThreadStoreError(
                f"no snapshot {ref!r} of thread {thread_id!r}; `kimi-context threads show "
                f"{thread_id}` lists them"
            )
        self._state(thread_id, ref)  # a checkpoint of this thread, else a clear error
        return ref, None

    def rollback(self, thread_id: str, ref: str) -> str:
        """Return a thread to a snapshot or checkpoint (a new head; nothing is deleted).

        Args:
            thread_id: The thread.
            ref: A memory snapshot id or name, or a checkpoint id of the thread.

        Returns:
            The new head checkpoint id.
        """
        self._state(thread_id)
        checkpoint_id, snapshot_id = self._resolve(thread_id, ref)
        session = self._session(thread_id)
        if session is not None and snapshot_id is not None:
            memory = self._memory(session[0], session[1].tools)
            memory.rollback(thread_id, snapshot_id)
            return str(self._state(thread_id).config["configurable"]["checkpoint_id"])
        config = self.graph.update_state(
            self._config(thread_id, checkpoint_id),
            {"reports": {"rollback": {"to": ref}}},
            as_node="compact",
        )
        return str(config["configurable"]["checkpoint_id"])

    def fork(self, thread_id: str, ref: str | None = None, *, new_id: str | None = None) -> str:
        """Copy a thread (at a snapshot/checkpoint, default its head) into a new thread.

        Args:
            thread_id: The source thread.
            ref: A memory snapshot id or name, or a checkpoint id; ``None`` = the head.
            new_id: Id of the new thread (generated when ``None``).

        Returns:
            The new thread id.
        """
        head = self._state(thread_id)
        checkpoint_id = str(head.config["configurable"]["checkpoint_id"])
        snapshot_id = None
        if ref is not None:
            checkpoint_id, snapshot_id = self._resolve(thread_id, ref)
        target = new_id or f"{thread_id}-fork-{uuid.uuid4().hex[:8]}"
        if self.saver.get_tuple(self._config(target)) is not None:
            raise ThreadStoreError(f"thread {target!r} already exists; pick another --to")
        session = self._session(thread_id)
        if session is not None:
            memory = self._memory(session[0], session[1].tools)
            if ref is None:
                snapshot_id = memory.snapshot(thread_id, name=f"fork:{target}")
            elif snapshot_id is None:  # a bare checkpoint id: give it a snapshot to share
                snapshot_id = memory.registry.register_snapshot(
                    thread_id, checkpoint_id, name=f"fork:{target}", reason="manual"
                )
            return memory.share(snapshot_id, session_id=target)
        values = self._state(thread_id, checkpoint_id).values or {}
        copied = {
            k: values[k] for k in ("messages", "compactions", "usage", "context") if k in values
        }
        self.graph.update_state(self._config(target), copied, as_node="compact")
        return target

    def prune(self, thread_ids: Sequence[str]) -> list[str]:
        """Keep one checkpoint per finished turn (the saver's ``keep_turns`` pruning).

        Rollback points stay valid: the package's saver keeps the checkpoints that
        snapshots point at, the turn in progress and forks.

        Args:
            thread_ids: Threads to prune; empty = every thread.

        Returns:
            The pruned thread ids.

        Raises:
            ThreadStoreError: Unknown thread, or the checkpointer cannot prune turns.
        """
        known = self._all_thread_ids()
        for thread_id in thread_ids:
            if thread_id not in known:
                raise ThreadStoreError(f"no thread {thread_id!r} in {self.label}")
        targets = list(thread_ids) or [t for t in known if registry_namespace(t) is None]
        cannot = ThreadStoreError(
            f"this checkpointer ({type(self.saver).__name__}) cannot prune finished turns "
            "(the package's SQLite saver can); `kimi-context threads vacuum` still reclaims "
            "free space"
        )
        if not isinstance(self.saver, KimiSqliteSaver):
            raise cannot  # other savers' prune keeps only the latest checkpoint
        try:
            self.saver.prune(targets, strategy="keep_turns")
        except (NotImplementedError, ValueError) as exc:
            raise cannot from exc
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc) from exc
        return targets

    def size_bytes(self) -> int:
        """Bytes of the database: the SQLite file plus its WAL, or ``pg_database_size``."""
        if self._pg_conn is not None:
            (size,) = self._sql("SELECT pg_database_size(current_database())")[0]
            return int(size)
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def vacuum(self) -> tuple[int, int]:
        """Reclaim free space (SQLite: ``VACUUM`` and a WAL checkpoint; Postgres: ``VACUUM``).

        Returns:
            Bytes before and after.

        Raises:
            ThreadStoreError: The database is locked or refuses the vacuum.
        """
        before = self.size_bytes()
        if self._pg_conn is not None:
            import psycopg

            try:
                for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                    self._pg_conn.execute(f"VACUUM {table}")
            except psycopg.Error as exc:
                raise ThreadStoreError(f"VACUUM failed: {_first_line(exc)}") from exc
            return before, self.size_bytes()
        assert isinstance(self.saver, KimiSqliteSaver)
        try:
            with self.saver.lock:
                self.saver.conn.commit()
                self.saver.conn.execute("VACUUM")
                self.saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise _sqlite_error(self.path, exc) from exc
        return before, self.size_bytes()
