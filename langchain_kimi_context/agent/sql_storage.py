"""Turn pruning on SQL tables: the statements the SQLite and Postgres savers share.

Both savers keep LangGraph's own tables (``checkpoints``, a writes table, Postgres's
``checkpoint_blobs``) and add one, ``kimi_incoming``: the incoming record of a checkpoint
that turn pruning kept (:mod:`~langchain_kimi_context.agent.delta_chain`), one serialised
blob per ``(thread_id, checkpoint_ns, checkpoint_id)``. :class:`SqlStorageMixin`
implements the storage primitives of
:class:`~langchain_kimi_context.agent.turn_pruning.TurnPruningMixin` and the extended
capabilities of LangGraph's conformance suite (``delete_thread``, ``copy_thread``,
``delete_for_runs``) once, in SQL both databases run; a saver describes where its rows
live (:class:`SqlLayout`) and supplies what differs:

* ``_rows`` / ``_exec``: run a statement written with ``?`` placeholders (rows come back
  as tuples);
* ``_chain_nodes``: load a checkpoint and its ancestors (``CHAIN_CTE`` + the saver's own
  decoding of checkpoints and writes);
* ``_drop_snapshot_counters``: remove ``counters_since_delta_snapshot`` from a
  checkpoint's metadata (stored as JSON text or as ``jsonb``);
* ``_collect_blobs``: delete channel blobs no checkpoint references (Postgres only).

A statement with a list of ids binds at most :data:`ID_BATCH` of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_kimi_context.agent.delta_chain import ChainNode, decode_incoming, encode_incoming
from langchain_kimi_context.agent.turn_pruning import Histories, Squash, TurnPruningMixin

__all__ = ["CHAIN_CTE", "ID_BATCH", "SqlLayout", "SqlStorageMixin", "incoming_ddl"]

ID_BATCH = 500
"""Most ids bound in one statement (below SQLite's oldest limit of 999 variables)."""

CHAIN_CTE = (
    "WITH RECURSIVE chain(cid, parent, depth) AS ("
    " SELECT checkpoint_id, parent_checkpoint_id, 1 FROM checkpoints"
    " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
    " UNION ALL SELECT c.checkpoint_id, c.parent_checkpoint_id, chain.depth + 1"
    " FROM checkpoints c JOIN chain ON c.checkpoint_id = chain.parent"
    " WHERE c.thread_id = ? AND c.checkpoint_ns = ? AND chain.depth < ?) "
)
"""``chain(cid, parent, depth)``: a checkpoint and up to ``depth - 1`` ancestors.

Parameters: thread id, namespace, checkpoint id, thread id, namespace, depth.
"""


@dataclass(frozen=True)
class SqlLayout:
    """Where a LangGraph SQL saver keeps the rows that turn pruning touches.

    Attributes:
        writes_table: LangGraph's table of pending writes.
        blob_column: The column of serialised values in ``kimi_incoming``.
        blob_type: Its SQL type.
        thread_columns: Every table holding rows of a thread, with the columns
            :meth:`SqlStorageMixin.copy_thread` copies (all but ``thread_id``).
        run_id_expr: SQL expression of a checkpoint's ``metadata["run_id"]``.
    """

    writes_table: str
    blob_column: str
    blob_type: str
    thread_columns: Mapping[str, str]
    run_id_expr: str

    @property
    def checkpoint_tables(self) -> tuple[str, ...]:
        """Tables with rows per checkpoint id (deleted with the checkpoint)."""
        return ("checkpoints", self.writes_table, "kimi_incoming")


def incoming_ddl(layout: SqlLayout) -> str:
    """The ``CREATE TABLE IF NOT EXISTS kimi_incoming`` statement for a layout.

    Args:
        layout: The saver's layout.

    Returns:
        The statement.
    """
    return (
        "CREATE TABLE IF NOT EXISTS kimi_incoming (thread_id TEXT NOT NULL, "
        "checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL, type TEXT, "
        f"{layout.blob_column} {layout.blob_type}, "
        "PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id))"
    )


def _batches(ids: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """``ids`` in slices of :data:`ID_BATCH`, each with its ``?, ?, ...`` marks."""
    for i in range(0, len(ids), ID_BATCH):
        part = list(ids[i : i + ID_BATCH])
        yield part, ",".join("?" * len(part))


class SqlStorageMixin(TurnPruningMixin):
    """Turn pruning primitives and extended capabilities over a :class:`SqlLayout`.

    List it before the LangGraph saver class (its ``__init__`` takes the saver's
    connection and the pruning options); set :attr:`layout`; implement
    ``_reading``, ``_writing``, ``_rows``, ``_exec``, ``_chain_nodes`` and
    ``_drop_snapshot_counters`` (``_collect_blobs`` when channel blobs live in a table
    of their own). ``setup`` runs :func:`incoming_ddl`.
    """

    layout: SqlLayout
    serde: Any

    def __init__(
        self,
        conn: Any,
        *,
        serde: Any = None,
        cache_threads: int = 32,
        prune_turns: bool = True,
        pin_channel: str = "snapshots",
    ) -> None:
        super().__init__(conn, serde=serde if serde is not None else self._default_serde())  # type: ignore[call-arg]
        self._init_pruning(
            cache_threads=cache_threads, prune_turns=prune_turns, pin_channel=pin_channel
        )

    def _default_serde(self) -> Any:
        """The serializer when none is given (``None``: the LangGraph saver's own)."""
        return None

    # --- what a saver supplies -------------------------------------------------------

    def _rows(self, h: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _exec(self, h: Any, sql: str, params: Sequence[Any]) -> None:
        raise NotImplementedError

    def _chain_nodes(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, depth: int
    ) -> dict[str, ChainNode]:
        """``checkpoint_id`` and up to ``depth - 1`` ancestors, without incoming records."""
        raise NotImplementedError

    def _drop_snapshot_counters(self, h: Any, thread_id: str, ns: str, checkpoint_id: str) -> None:
        raise NotImplementedError

    def _collect_blobs(self, h: Any, thread_id: str, ns: str) -> None:
        """Delete the thread's channel blobs that no checkpoint references (none here)."""

    # --- primitives of TurnPruningMixin ----------------------------------------------

    def _load_chain(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, *, depth: int
    ) -> dict[str, ChainNode]:
        nodes = self._chain_nodes(h, thread_id, ns, checkpoint_id, depth)
        column = self.layout.blob_column
        for ids, marks in _batches(list(nodes)):
            for cid, type_, blob in self._rows(
                h,
                f"SELECT checkpoint_id, type, {column} FROM kimi_incoming "  # noqa: S608
                f"WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id IN ({marks})",
                (thread_id, ns, *ids),
            ):
                nodes[cid].incoming = decode_incoming(self.serde.loads_typed((type_, blob)))
        return nodes

    def _child_counts(self, h: Any, thread_id: str, ns: str, ids: Sequence[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for part, marks in _batches(ids):
            for parent, n in self._rows(
                h,
                "SELECT parent_checkpoint_id, COUNT(*) FROM checkpoints WHERE thread_id = ? "  # noqa: S608
                f"AND checkpoint_ns = ? AND parent_checkpoint_id IN ({marks}) "
                "GROUP BY parent_checkpoint_id",
                (thread_id, ns, *part),
            ):
                counts[parent] = int(n)
        return counts

    def _namespaces(self, h: Any, thread_id: str) -> list[str]:
        sql = "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?"
        return [r[0] for r in self._rows(h, sql, (thread_id,))]

    def _latest_id(self, h: Any, thread_id: str, ns: str) -> str | None:
        rows = self._rows(
            h,
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id, ns),
        )
        return str(rows[0][0]) if rows else None

    def _store_incoming(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, incoming: Histories
    ) -> None:
        type_, blob = self.serde.dumps_typed(encode_incoming(incoming))
        column = self.layout.blob_column
        self._exec(
            h,
            f"INSERT INTO kimi_incoming (thread_id, checkpoint_ns, checkpoint_id, type, {column}) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) "
            f"DO UPDATE SET type = excluded.type, {column} = excluded.{column}",
            (thread_id, ns, checkpoint_id, type_, blob),
        )

    def _delete_checkpoints(self, h: Any, thread_id: str, ns: str, ids: Sequence[str]) -> None:
        for part, marks in _batches(ids):
            for table in self.layout.checkpoint_tables:
                self._exec(
                    h,
                    f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "  # noqa: S608
                    f"AND checkpoint_id IN ({marks})",
                    (thread_id, ns, *part),
                )

    def _relink(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, parent_id: str | None
    ) -> None:
        self._exec(
            h,
            "UPDATE checkpoints SET parent_checkpoint_id = ? WHERE thread_id = ? "
            "AND checkpoint_ns = ? AND checkpoint_id = ?",
            (parent_id, thread_id, ns, checkpoint_id),
        )

    def _apply_squash(self, h: Any, thread_id: str, ns: str, squash: Squash) -> None:
        self._delete_checkpoints(h, thread_id, ns, squash.removed)
        if squash.stop_id is not None and squash.moved:
            marks = ",".join("?" * len(squash.moved))
            self._exec(
                h,
                f"DELETE FROM {self.layout.writes_table} WHERE thread_id = ? "  # noqa: S608
                f"AND checkpoint_ns = ? AND checkpoint_id = ? AND channel IN ({marks})",
                (thread_id, ns, squash.stop_id, *squash.moved),
            )
        self._relink(h, thread_id, ns, squash.keep_id, squash.stop_id)
        # The snapshot counters only steer the run that resumes from the latest
        # checkpoint; a finished turn's checkpoint never is (a new turn follows it).
        self._drop_snapshot_counters(h, thread_id, ns, squash.keep_id)
        self._store_incoming(h, thread_id, ns, squash.keep_id, squash.incoming)
        self._collect_blobs(h, thread_id, ns)

    def _apply_keep_latest(
        self, h: Any, thread_id: str, ns: str, keep_id: str, incoming: Histories
    ) -> None:
        for table in self.layout.checkpoint_tables:
            self._exec(
                h,
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ? "  # noqa: S608
                "AND checkpoint_id != ?",
                (thread_id, ns, keep_id),
            )
        self._relink(h, thread_id, ns, keep_id, None)
        self._store_incoming(h, thread_id, ns, keep_id, incoming)
        self._collect_blobs(h, thread_id, ns)

    # --- extended capabilities -------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        """Delete every row of a thread (checkpoints, writes, blobs, incoming records).

        Args:
            thread_id: The thread to delete.
        """
        with self._writing() as h:
            for table in self.layout.thread_columns:
                self._exec(h, f"DELETE FROM {table} WHERE thread_id = ?", (str(thread_id),))  # noqa: S608
        self._forget(str(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every row of a thread to another thread.

        Checkpoint ids are kept, so a checkpoint id of the source addresses the same
        state in the copy (how a session is shared or forked).

        Args:
            source_thread_id: The thread to copy.
            target_thread_id: The new thread (its existing rows are replaced).
        """
        src, dst = str(source_thread_id), str(target_thread_id)
        with self._writing() as h:
            for table in self.layout.thread_columns:
                self._exec(h, f"DELETE FROM {table} WHERE thread_id = ?", (dst,))  # noqa: S608
            for table, columns in self.layout.thread_columns.items():
                self._exec(
                    h,
                    f"INSERT INTO {table} (thread_id, {columns}) "  # noqa: S608
                    f"SELECT ?, {columns} FROM {table} WHERE thread_id = ?",
                    (dst, src),
                )
        self._forget(dst)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (with their writes) that the given runs created.

        Args:
            run_ids: ``run_id`` values of checkpoint metadata.
        """
        ids = [str(r) for r in run_ids]
        if not ids:
            return
        with self._writing() as h:
            doomed: dict[tuple[str, str], list[str]] = {}
            for part, marks in _batches(ids):
                for thread_id, ns, cid in self._rows(
                    h,
                    "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "  # noqa: S608
                    f"WHERE {self.layout.run_id_expr} IN ({marks})",
                    part,
                ):
                    doomed.setdefault((thread_id, ns), []).append(cid)
            for (thread_id, ns), cids in doomed.items():
                self._delete_checkpoints(h, thread_id, ns, cids)
                self._collect_blobs(h, thread_id, ns)
        self._forget()
