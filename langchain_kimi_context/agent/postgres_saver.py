"""Postgres persistence: ``KimiPostgresSaver`` and the ``PostgresCheckpointer`` of a URL.

:class:`KimiPostgresSaver` is LangGraph's ``PostgresSaver`` with the same storage
behaviour as the default SQLite saver
(:class:`~langchain_kimi_context.agent.turn_pruning.TurnPruningMixin`): after each agent
run the node checkpoints of the turns before the latest are squashed into one
checkpoint per finished turn (their delta writes kept in a ``kimi_incoming`` row of the
kept checkpoint), channel blobs that no remaining checkpoint references are deleted,
and delta histories are remembered per checkpoint. The SQL of all that is shared with the
SQLite saver (:class:`~langchain_kimi_context.agent.sql_storage.SqlStorageMixin`); this
module holds what is Postgres's own: ``%s`` placeholders and dict rows, checkpoints read
with their channel blobs, ``jsonb`` metadata and the collection of unreferenced blobs.
Everything else is ``PostgresSaver``'s own tables and SQL. :class:`PostgresCheckpointer`
is that saver on a connection pool plus an ``AsyncPostgresSaver`` on an async pool, what
``checkpointer="postgresql://..."`` opens. Needs the ``postgres`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from langchain_kimi_context.agent.delta_chain import ChainNode
from langchain_kimi_context.agent.sql_storage import (
    CHAIN_CTE,
    SqlLayout,
    SqlStorageMixin,
    incoming_ddl,
)
from langchain_kimi_context.agent.threaded_async import ThreadedAsyncMixin
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = ["POSTGRES_LAYOUT", "KimiPostgresSaver", "PostgresCheckpointer", "connection_pool"]

POSTGRES_LAYOUT = SqlLayout(
    writes_table="checkpoint_writes",
    blob_column="blob",
    blob_type="BYTEA",
    thread_columns={
        "checkpoints": (
            "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
        ),
        "checkpoint_blobs": "checkpoint_ns, channel, version, type, blob",
        "checkpoint_writes": (
            "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"
        ),
        "kimi_incoming": "checkpoint_ns, checkpoint_id, type, blob",
    },
    run_id_expr="metadata ->> 'run_id'",
)
"""Where ``PostgresSaver`` keeps a thread's rows (channel values in ``checkpoint_blobs``)."""

_BLOB_GC_SQL = """
DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND b.checkpoint_ns = %s
AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
    AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
)
"""


class KimiPostgresSaver(SqlStorageMixin, PostgresSaver):
    """``PostgresSaver`` that prunes finished turns and remembers delta histories.

    Args:
        conn: A psycopg ``Connection`` (autocommit, dict rows) or ``ConnectionPool``.
        serde: Serializer (default: ``PostgresSaver``'s).
        cache_threads: Threads whose histories are kept in memory (LRU).
        prune_turns: Let the agent squash finished turns after each run.
        pin_channel: Channel whose writes name checkpoints that must stay.

    Example:
        >>> KimiPostgresSaver.layout.writes_table
        'checkpoint_writes'
    """

    layout = POSTGRES_LAYOUT

    def setup(self) -> None:
        """Create LangGraph's tables and ``kimi_incoming`` (idempotent)."""
        super().setup()
        with self._cursor() as cur:
            cur.execute(incoming_ddl(self.layout))

    # --- Postgres's side of SqlStorageMixin ----------------------------------------------

    def _reading(self) -> AbstractContextManager[Any]:
        return self._cursor()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._cursor() as cur, cur.connection.transaction():
            yield cur

    def _writing(self) -> AbstractContextManager[Any]:
        return self._transaction()

    def _rows(self, h: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in h.execute(sql.replace("?", "%s"), params).fetchall()]

    def _exec(self, h: Any, sql: str, params: Sequence[Any]) -> None:
        h.execute(sql.replace("?", "%s"), params)

    def _chain_nodes(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, depth: int
    ) -> dict[str, ChainNode]:
        chain = CHAIN_CTE + "SELECT cid FROM chain"  # noqa: S608
        params = (thread_id, ns, checkpoint_id, thread_id, ns, depth)
        ids = [r[0] for r in self._rows(h, chain, params)]
        if not ids:
            return {}
        rows = h.execute(
            self.SELECT_SQL
            + "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)",
            (thread_id, ns, ids),
        ).fetchall()
        out: dict[str, ChainNode] = {}
        for row in rows:
            tup = self._load_checkpoint_tuple(row)
            cid = str(row["checkpoint_id"])
            out[cid] = ChainNode(
                checkpoint_id=cid,
                parent_id=row["parent_checkpoint_id"],
                values=tup.checkpoint["channel_values"],
                writes=tup.pending_writes or [],
                source=(tup.metadata or {}).get("source"),
                versions=frozenset(tup.checkpoint["channel_versions"]),
            )
        return out

    def _drop_snapshot_counters(self, h: Any, thread_id: str, ns: str, checkpoint_id: str) -> None:
        h.execute(
            "UPDATE checkpoints SET metadata = metadata - 'counters_since_delta_snapshot' "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s",
            (thread_id, ns, checkpoint_id),
        )

    def _collect_blobs(self, h: Any, thread_id: str, ns: str) -> None:
        h.execute(_BLOB_GC_SQL, (thread_id, ns))


_CONN_KWARGS: Mapping[str, Any] = {"autocommit": True, "prepare_threshold": 0}


def connection_pool(url: str, *, max_size: int) -> ConnectionPool:
    """An open ``psycopg_pool.ConnectionPool`` with the connection options the savers need.

    Connections are in autocommit mode (LangGraph's savers open transactions where they
    need them) and never prepare statements (safe behind PgBouncer).

    Args:
        url: ``postgresql://...`` or a libpq keyword/value string.
        max_size: Most connections.

    Returns:
        The pool (close it when done).
    """
    return ConnectionPool(url, min_size=1, max_size=max_size, kwargs=dict(_CONN_KWARGS), open=True)


class PostgresCheckpointer(ThreadedAsyncMixin, KimiPostgresSaver):
    """The Postgres checkpointer of ``checkpointer="postgresql://..."``: two pools.

    A :class:`KimiPostgresSaver` (turn pruning, remembered histories) on a
    ``psycopg_pool.ConnectionPool`` answers the sync calls (``invoke``, ``get_state``);
    async checkpoint reads and writes (``ainvoke``, ``astream``) go to an
    ``AsyncPostgresSaver`` on an ``AsyncConnectionPool`` opened on first async use (in
    the running event loop), and the other async calls (history reads, pruning, copies,
    deletes) run the sync ones in a worker thread (both pools see the same tables).
    Tables are created on first use.

    Args:
        url: ``postgresql://user@host:port/db`` (options such as ``?options=-csearch_path%3Dx``
            pass through to libpq).
        max_size: Connections per pool.

    Raises:
        KimiConfigurationError: The server cannot be reached (the message names the URL
            without its password).
    """

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        self.max_size = max_size
        try:
            pool = connection_pool(url, max_size=max_size)
        except Exception as exc:
            raise self._unreachable(exc) from exc
        try:
            pool.wait(timeout=10)
        except Exception as exc:
            pool.close()
            raise self._unreachable(exc) from exc
        super().__init__(pool)
        self.setup()
        self._async: AsyncPostgresSaver | None = None
        self._apool: AsyncConnectionPool | None = None

    def _unreachable(self, exc: Exception) -> KimiConfigurationError:
        return KimiConfigurationError(
            f"Cannot connect the Postgres checkpointer to {_redact(self.url)}: {exc}. Check "
            "the URL and that the server accepts connections."
        )

    def __repr__(self) -> str:
        return f"PostgresCheckpointer({_redact(self.url)!r})"

    @property
    def sync(self) -> KimiPostgresSaver:
        """The saver of the sync calls (this object)."""
        return self

    async def _asaver(self) -> AsyncPostgresSaver:
        if self._async is None:
            apool: Any = AsyncConnectionPool(
                self.url, min_size=1, max_size=self.max_size, kwargs=dict(_CONN_KWARGS), open=False
            )
            await apool.open(wait=True, timeout=10)
            self._apool = apool
            self._async = AsyncPostgresSaver(apool)
        return self._async

    def close(self) -> None:
        """Close the sync pool (the async pool closes with :meth:`aclose`)."""
        self.conn.close()

    async def aclose(self) -> None:
        """Close both pools."""
        if self._apool is not None:
            await self._apool.close()
        self.conn.close()

    # --- async checkpoint reads and writes: AsyncPostgresSaver ---------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """``aget_tuple`` of the async saver."""
        return await (await self._asaver()).aget_tuple(config)

    async def alist(self, *args: Any, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        """``alist`` of the async saver."""
        async for item in (await self._asaver()).alist(*args, **kwargs):
            yield item

    async def aput(self, *args: Any, **kwargs: Any) -> RunnableConfig:
        """``aput`` of the async saver."""
        return await (await self._asaver()).aput(*args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        """``aput_writes`` of the async saver."""
        await (await self._asaver()).aput_writes(*args, **kwargs)


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    cred, _, host = tail.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}" if ":" in cred else url
