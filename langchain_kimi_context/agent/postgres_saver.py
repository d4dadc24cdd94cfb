"""``KimiPostgresSaver``: LangGraph's ``PostgresSaver`` with turn pruning.

The same storage behaviour as the default SQLite saver
(:class:`~langchain_kimi_context.agent.turn_pruning.TurnPruningMixin`): after each agent
run the node checkpoints of the turns before the latest are squashed into one
checkpoint per finished turn (their delta writes kept in a ``kimi_incoming`` row of the
kept checkpoint), channel blobs that no remaining checkpoint references are deleted,
and delta histories are remembered per checkpoint. Everything else is
``PostgresSaver``'s own tables and SQL. Needs the ``postgres`` extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from langgraph.checkpoint.base import (
    DeltaChannelHistory,
)
from langgraph.checkpoint.postgres import PostgresSaver

from langchain_kimi_context.agent.delta_chain import ChainNode, decode_incoming, encode_incoming
from langchain_kimi_context.agent.turn_pruning import TurnPruningMixin

__all__ = ["KimiPostgresSaver"]

_INCOMING_DDL = """
CREATE TABLE IF NOT EXISTS kimi_incoming (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    type TEXT,
    blob BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
)
"""

_CHAIN_SQL = """
WITH RECURSIVE chain(cid, parent, depth) AS (
    SELECT checkpoint_id, parent_checkpoint_id, 1 FROM checkpoints
    WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s
    UNION ALL
    SELECT c.checkpoint_id, c.parent_checkpoint_id, chain.depth + 1
    FROM checkpoints c JOIN chain ON c.checkpoint_id = chain.parent
    WHERE c.thread_id = %s AND c.checkpoint_ns = %s AND chain.depth < %s
)
SELECT cid FROM chain
"""

_BLOB_GC_SQL = """
DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND b.checkpoint_ns = %s
AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
    AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
)
"""


_THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "kimi_incoming")
_COPY_COLUMNS = {
    "checkpoints": "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata",
    "checkpoint_blobs": "checkpoint_ns, channel, version, type, blob",
    "checkpoint_writes": (
        "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"
    ),
    "kimi_incoming": "checkpoint_ns, checkpoint_id, type, blob",
}


class KimiPostgresSaver(TurnPruningMixin, PostgresSaver):
    """``PostgresSaver`` that prunes finished turns and remembers delta histories.

    Args:
        conn: A psycopg ``Connection`` (autocommit, dict rows) or ``ConnectionPool``.
        serde: Serializer (default: ``PostgresSaver``'s).
        cache_threads: Threads whose histories are kept in memory (LRU).
        prune_turns: Let the agent squash finished turns after each run.
        pin_channel: Channel whose writes name checkpoints that must stay.

    Example:
        >>> KimiPostgresSaver.prune.__name__
        'prune'
    """

    def __init__(
        self,
        conn: Any,
        *,
        serde: Any = None,
        cache_threads: int = 32,
        prune_turns: bool = True,
        pin_channel: str = "snapshots",
    ) -> None:
        super().__init__(conn, serde=serde)
        self._init_pruning(
            cache_threads=cache_threads, prune_turns=prune_turns, pin_channel=pin_channel
        )

    def setup(self) -> None:
        """Create LangGraph's tables and ``kimi_incoming`` (idempotent).

        Example:
            >>> KimiPostgresSaver.setup.__name__
            'setup'
        """
        super().setup()
        with self._cursor() as cur:
            cur.execute(_INCOMING_DDL)

    # --- deleting ------------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints, writes, blobs and incoming records.

        Args:
            thread_id: The thread.

        Example:
            >>> KimiPostgresSaver.delete_thread.__name__
            'delete_thread'
        """
        super().delete_thread(thread_id)
        with self._cursor() as cur:
            cur.execute("DELETE FROM kimi_incoming WHERE thread_id = %s", (str(thread_id),))
        self._forget(str(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob, write and incoming record of a thread to another.

        Checkpoint ids are kept, so a checkpoint id of the source addresses the same
        state in the copy.

        Args:
            source_thread_id: The thread to copy.
            target_thread_id: The new thread (its existing rows are replaced).

        Example:
            >>> KimiPostgresSaver.copy_thread.__name__
            'copy_thread'
        """
        src, dst = str(source_thread_id), str(target_thread_id)
        with self._transaction() as cur:
            for table in _THREAD_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE thread_id = %s", (dst,))  # noqa: S608
            for table, columns in _COPY_COLUMNS.items():
                cur.execute(
                    f"INSERT INTO {table} (thread_id, {columns}) "  # noqa: S608
                    f"SELECT %s, {columns} FROM {table} WHERE thread_id = %s",
                    (dst, src),
                )
        self._forget(dst)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) that the given runs created.

        Args:
            run_ids: ``run_id`` values of checkpoint metadata.

        Example:
            >>> KimiPostgresSaver.delete_for_runs.__name__
            'delete_for_runs'
        """
        ids = [str(r) for r in run_ids]
        if not ids:
            return
        with self._transaction() as cur:
            rows = cur.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "
                "WHERE metadata ->> 'run_id' = ANY(%s)",
                (ids,),
            ).fetchall()
            for row in rows:
                self._delete_checkpoints(
                    cur, row["thread_id"], row["checkpoint_ns"], [row["checkpoint_id"]]
                )
            for thread_id, ns in {(r["thread_id"], r["checkpoint_ns"]) for r in rows}:
                cur.execute(_BLOB_GC_SQL, (thread_id, ns))
        self._forget()

    # --- storage primitives of TurnPruningMixin ---------------------------------------

    def _reading(self) -> AbstractContextManager[Any]:
        return self._cursor()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._cursor() as cur, cur.connection.transaction():
            yield cur

    def _writing(self) -> AbstractContextManager[Any]:
        return self._transaction()

    def _load_chain(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, *, depth: int
    ) -> dict[str, ChainNode]:
        ids = [
            r["cid"]
            for r in h.execute(
                _CHAIN_SQL, (thread_id, ns, checkpoint_id, thread_id, ns, depth)
            ).fetchall()
        ]
        if not ids:
            return {}
        rows = h.execute(
            self.SELECT_SQL
            + "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)",
            (thread_id, ns, ids),
        ).fetchall()
        incoming = {
            r["checkpoint_id"]: (r["type"], r["blob"])
            for r in h.execute(
                "SELECT checkpoint_id, type, blob FROM kimi_incoming WHERE thread_id = %s "
                "AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)",
                (thread_id, ns, ids),
            ).fetchall()
        }
        out: dict[str, ChainNode] = {}
        for row in rows:
            tup = self._load_checkpoint_tuple(row)
            cid = str(row["checkpoint_id"])
            inc = incoming.get(cid)
            out[cid] = ChainNode(
                checkpoint_id=cid,
                parent_id=row["parent_checkpoint_id"],
                values=tup.checkpoint["channel_values"],
                writes=tup.pending_writes or [],
                incoming=decode_incoming(self.serde.loads_typed(inc)) if inc else {},
                source=(tup.metadata or {}).get("source"),
                versions=frozenset(tup.checkpoint["channel_versions"]),
            )
        return out

    def _child_counts(self, h: Any, thread_id: str, ns: str, ids: Sequence[str]) -> dict[str, int]:
        rows = h.execute(
            "SELECT parent_checkpoint_id AS parent, COUNT(*) AS n FROM checkpoints "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND parent_checkpoint_id = ANY(%s) "
            "GROUP BY parent_checkpoint_id",
            (thread_id, ns, list(ids)),
        ).fetchall()
        return {r["parent"]: int(r["n"]) for r in rows}

    def _namespaces(self, h: Any, thread_id: str) -> list[str]:
        rows = h.execute(
            "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = %s", (thread_id,)
        ).fetchall()
        return [r["checkpoint_ns"] for r in rows]

    def _latest_id(self, h: Any, thread_id: str, ns: str) -> str | None:
        row = h.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id, ns),
        ).fetchone()
        return str(row["checkpoint_id"]) if row else None

    def _store_incoming(
        self,
        h: Any,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        incoming: Mapping[str, DeltaChannelHistory],
    ) -> None:
        type_, blob = self.serde.dumps_typed(encode_incoming(incoming))
        h.execute(
            "INSERT INTO kimi_incoming (thread_id, checkpoint_ns, checkpoint_id, type, blob) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) "
            "DO UPDATE SET type = EXCLUDED.type, blob = EXCLUDED.blob",
            (thread_id, ns, checkpoint_id, type_, blob),
        )

    def _delete_checkpoints(self, h: Any, thread_id: str, ns: str, ids: Sequence[str]) -> None:
        for table in ("checkpoints", "checkpoint_writes", "kimi_incoming"):
            h.execute(
                f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns = %s "  # noqa: S608
                "AND checkpoint_id = ANY(%s)",
                (thread_id, ns, list(ids)),
            )

    def _apply_squash(
        self,
        h: Any,
        thread_id: str,
        ns: str,
        *,
        keep_id: str,
        removed: Sequence[str],
        stop_id: str | None,
        moved: Sequence[str],
        incoming: Mapping[str, DeltaChannelHistory],
    ) -> None:
        self._delete_checkpoints(h, thread_id, ns, removed)
        if stop_id is not None and moved:
            h.execute(
                "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s "
                "AND checkpoint_id = %s AND channel = ANY(%s)",
                (thread_id, ns, stop_id, list(moved)),
            )
        # The snapshot counters only steer the run that resumes from the latest
        # checkpoint; a finished turn's checkpoint never is (a new turn follows it).
        h.execute(
            "UPDATE checkpoints SET parent_checkpoint_id = %s, "
            "metadata = metadata - 'counters_since_delta_snapshot' "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s",
            (stop_id, thread_id, ns, keep_id),
        )
        self._store_incoming(h, thread_id, ns, keep_id, incoming)
        h.execute(_BLOB_GC_SQL, (thread_id, ns))

    def _apply_keep_latest(
        self,
        h: Any,
        thread_id: str,
        ns: str,
        keep_id: str,
        incoming: Mapping[str, DeltaChannelHistory],
    ) -> None:
        for table in ("checkpoints", "checkpoint_writes", "kimi_incoming"):
            h.execute(
                f"DELETE FROM {table} WHERE thread_id = %s AND checkpoint_ns = %s "  # noqa: S608
                "AND checkpoint_id != %s",
                (thread_id, ns, keep_id),
            )
        h.execute(
            "UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = %s "
            "AND checkpoint_ns = %s AND checkpoint_id = %s",
            (thread_id, ns, keep_id),
        )
        self._store_incoming(h, thread_id, ns, keep_id, incoming)
        h.execute(_BLOB_GC_SQL, (thread_id, ns))
