"""The default checkpointer: ``KimiSqliteSaver``, LangGraph's ``SqliteSaver`` extended.

Turn pruning, remembered delta histories and the extended capabilities come from
:class:`~langchain_kimi_context.agent.sql_storage.SqlStorageMixin` (shared with the
Postgres saver); this module holds what is SQLite's own: the ``writes`` table and JSON
metadata text, compressed blobs (:mod:`~langchain_kimi_context.agent.codec`), compact
channel versions, the async API in a worker thread, and the database file.

The default file is ``$KIMI_CONTEXT_DB`` if set, else
``~/.local/share/langchain-kimi-context/checkpoints.sqlite``, created on first use.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.utils import load_pending_writes

from langchain_kimi_context.agent.codec import compressed_serde
from langchain_kimi_context.agent.delta_chain import ChainNode
from langchain_kimi_context.agent.sql_storage import (
    CHAIN_CTE,
    SqlLayout,
    SqlStorageMixin,
    incoming_ddl,
)
from langchain_kimi_context.agent.threaded_async import ThreadedAsyncMixin
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = [
    "DB_ENV_VAR",
    "SQLITE_LAYOUT",
    "KimiSqliteSaver",
    "default_checkpoint_path",
    "open_sqlite_checkpointer",
]

DB_ENV_VAR = "KIMI_CONTEXT_DB"
"""Environment variable naming the default SQLite checkpoint file."""

SQLITE_LAYOUT = SqlLayout(
    writes_table="writes",
    blob_column="value",
    blob_type="BLOB",
    thread_columns={
        "checkpoints": (
            "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
        ),
        "writes": "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value",
        "kimi_incoming": "checkpoint_ns, checkpoint_id, type, value",
    },
    run_id_expr="json_extract(CAST(metadata AS TEXT), '$.run_id')",
)
"""Where ``SqliteSaver`` keeps a thread's rows (metadata is JSON text in a BLOB)."""


def default_checkpoint_path() -> Path:
    """Return the default SQLite checkpoint file (not created here).

    ``$KIMI_CONTEXT_DB`` wins; otherwise
    ``$XDG_DATA_HOME/langchain-kimi-context/checkpoints.sqlite`` with ``XDG_DATA_HOME``
    defaulting to ``~/.local/share``.

    Returns:
        The path.
    """
    env = os.environ.get(DB_ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "langchain-kimi-context" / "checkpoints.sqlite"


class KimiSqliteSaver(ThreadedAsyncMixin, SqlStorageMixin, SqliteSaver):
    """``SqliteSaver`` that keeps long sessions small and fast to browse.

    * **Turn pruning** (``prune_turns=True``): after each run of the agent
      (:func:`~langchain_kimi_context.agent.storage.prune_after_run`), the node
      checkpoints of the turns before the latest one are squashed: one checkpoint per
      finished turn stays (the last one, whose id never changes), its delta-channel
      writes move into an *incoming* record stored next to it
      (:mod:`~langchain_kimi_context.agent.delta_chain`), and every state that stays
      loads exactly as before. Checkpoints a compaction recorded in the ``snapshots``
      channel, ``update_state`` checkpoints and forked histories are never squashed;
      the turn in progress is never touched. :meth:`prune` does the same on demand
      (``"keep_turns"``) and implements LangGraph's ``"keep_latest"`` and ``"delete"``
      safely for delta channels.
    * **Extended capabilities** of LangGraph's checkpointer conformance suite:
      :meth:`copy_thread`, :meth:`delete_for_runs`, :meth:`prune` (and async twins).
    * **Compact versions**: channel versions of new threads are small integers
      (``SqliteSaver`` writes 49-character strings); old threads keep theirs.
    * **History without re-walking**: delta histories are remembered per checkpoint,
      so loading the next checkpoint of a thread walks only what was written since,
      and browsing ``get_state_history`` derives each parent's history from its
      child's (a prefix), in linear time overall.
    * Compressed blobs (``EncryptedSerializer(ZlibCodec())``), and the async API (in
      a worker thread) so ``ainvoke`` works on the default checkpointer.

    Args:
        conn: The SQLite connection (``check_same_thread=False``).
        serde: Serializer; default = LangGraph's ``JsonPlusSerializer`` wrapped in
            ``EncryptedSerializer(ZlibCodec())`` (compressed blobs).
        cache_threads: Threads whose histories are kept in memory (LRU).
        prune_turns: Let the agent squash the node checkpoints of
            finished turns after each agent run (``put`` itself never prunes).
        pin_channel: Channel whose writes name checkpoints that must stay.

    Example:
        >>> import sqlite3
        >>> saver = KimiSqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
        >>> saver.setup(); type(saver.serde).__name__
        'EncryptedSerializer'
    """

    layout = SQLITE_LAYOUT

    def _default_serde(self) -> Any:
        return compressed_serde()

    def setup(self) -> None:
        """Create the tables (LangGraph's plus ``kimi_incoming``) if missing."""
        if self.is_setup:
            return
        super().setup()
        self.conn.execute(incoming_ddl(self.layout))
        self.conn.commit()

    def get_next_version(self, current: Any, channel: None = None) -> Any:
        """Next channel version: an integer for new threads, the stock string otherwise.

        Args:
            current: The current version (``None``, an int, or a stock string).
            channel: Unused.

        Returns:
            The next version.
        """
        if isinstance(current, str):
            return super().get_next_version(current, channel)
        return int(current or 0) + 1

    # --- SQLite's side of SqlStorageMixin ------------------------------------------------

    def _reading(self) -> AbstractContextManager[sqlite3.Cursor]:
        return self.cursor(transaction=False)

    def _writing(self) -> AbstractContextManager[sqlite3.Cursor]:
        return self.cursor(transaction=True)

    def _rows(self, h: sqlite3.Cursor, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return h.execute(sql, tuple(params)).fetchall()

    def _exec(self, h: sqlite3.Cursor, sql: str, params: Sequence[Any]) -> None:
        h.execute(sql, tuple(params))

    def _chain_nodes(
        self, h: sqlite3.Cursor, thread_id: str, ns: str, checkpoint_id: str, depth: int
    ) -> dict[str, ChainNode]:
        rows = h.execute(
            CHAIN_CTE  # noqa: S608
            + "SELECT c.checkpoint_id, c.parent_checkpoint_id, c.type, c.checkpoint, c.metadata"
            " FROM chain JOIN checkpoints c ON c.thread_id = ? AND c.checkpoint_ns = ?"
            " AND c.checkpoint_id = chain.cid",
            (thread_id, ns, checkpoint_id, thread_id, ns, depth, thread_id, ns),
        ).fetchall()
        if not rows:
            return {}
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        task_path = "task_path" if self._has_task_path else "''"
        writes: dict[str, list[Any]] = {cid: [] for cid in ids}
        for row in h.execute(
            f"SELECT checkpoint_id, task_id, channel, type, value, {task_path}, idx "  # noqa: S608
            f"FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id IN ({marks})",
            (thread_id, ns, *ids),
        ).fetchall():
            writes[row[0]].append(row[1:])
        out: dict[str, ChainNode] = {}
        for cid, parent_id, type_, blob, metadata in rows:
            checkpoint = self.serde.loads_typed((type_, blob))
            out[cid] = ChainNode(
                checkpoint_id=cid,
                parent_id=parent_id,
                values=checkpoint["channel_values"],
                writes=load_pending_writes(writes[cid], self.serde),
                source=(json.loads(metadata) if metadata else {}).get("source"),
                versions=frozenset(checkpoint["channel_versions"]),
            )
        return out

    def _drop_snapshot_counters(
        self, h: sqlite3.Cursor, thread_id: str, ns: str, checkpoint_id: str
    ) -> None:
        where = (thread_id, ns, checkpoint_id)
        row = h.execute(
            "SELECT metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
            "AND checkpoint_id = ?",
            where,
        ).fetchone()
        metadata = json.loads(row[0]) if row and row[0] else {}
        metadata.pop("counters_since_delta_snapshot", None)
        h.execute(
            "UPDATE checkpoints SET metadata = ? WHERE thread_id = ? AND checkpoint_ns = ? "
            "AND checkpoint_id = ?",
            (json.dumps(metadata, ensure_ascii=False).encode("utf-8", "ignore"), *where),
        )


def open_sqlite_checkpointer(
    path: str | os.PathLike[str] | None = None, *, prune_turns: bool = True
) -> KimiSqliteSaver:
    """Open (creating on first use) a SQLite checkpointer in a file.

    The connection is shared across threads (the saver serialises access with a lock)
    and runs in WAL mode with ``synchronous=NORMAL``, so a process killed mid-write never
    leaves a half-written checkpoint: the last committed checkpoint is what a restart
    sees (an OS crash or power loss may lose the last few commits, never corrupt them).

    Args:
        path: The database file; ``None`` = :func:`default_checkpoint_path`. Parent
            directories are created.
        prune_turns: Squash the node checkpoints of finished turns (see
            :class:`KimiSqliteSaver`).

    Returns:
        A ready :class:`KimiSqliteSaver`.

    Raises:
        KimiConfigurationError: If the file cannot be created or opened (the message
            names the path, where it came from and the alternatives).
    """
    target = Path(path).expanduser() if path is not None else default_checkpoint_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(target), check_same_thread=False)
        saver = KimiSqliteSaver(conn, prune_turns=prune_turns)
        saver.setup()  # creates the tables, switches to WAL
    except (OSError, sqlite3.Error) as exc:
        if path is not None:
            source = "from db_path="
        elif os.environ.get(DB_ENV_VAR):
            source = f"from ${DB_ENV_VAR}"
        else:
            source = "the default path"
        msg = (
            f"Cannot open the checkpoint database {str(target)!r} ({source}): {exc}. Point "
            f"{DB_ENV_VAR} or db_path= at a writable file (not a directory), or pass "
            "checkpointer=... (e.g. InMemorySaver()) or checkpointer=False."
        )
        raise KimiConfigurationError(msg) from exc
    # WAL + synchronous=NORMAL: a committed checkpoint survives the process being killed
    # at any point (the WAL is in the OS page cache); only a power loss/OS crash may
    # lose the last few commits. Saves one fsync per node.
    conn.execute("PRAGMA synchronous=NORMAL")
    return saver
