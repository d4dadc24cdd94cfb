"""``KimiPostgresSaver``: LangGraph's ``PostgresSaver`` with turn pruning.

The same storage behaviour as the default SQLite saver
(:class:`~langchain_kimi_context.agent.turn_pruning.TurnPruningMixin`): after each agent
run the node checkpoints of the turns before the latest are squashed into one
checkpoint per finished turn (their delta writes kept in a ``kimi_incoming`` row of the
kept checkpoint), channel blobs that no remaining checkpoint references are deleted,
and delta histories are remembered per checkpoint. The SQL of all that is shared with the
SQLite saver (:class:`~langchain_kimi_context.agent.sql_storage.SqlStorageMixin`); this
module holds what is Postgres's own: ``%s`` placeholders and dict rows, checkpoints read
with their channel blobs, ``jsonb`` metadata and the collection of unreferenced blobs.
Everything else is ``PostgresSaver``'s own tables and SQL. Needs the ``postgres`` extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver

from langchain_kimi_context.agent.delta_chain import ChainNode
from langchain_kimi_context.agent.sql_storage import (
    CHAIN_CTE,
    SqlLayout,
    SqlStorageMixin,
    incoming_ddl,
)

__all__ = ["POSTGRES_LAYOUT", "KimiPostgresSaver"]

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
