"""Checkpoint storage that grows linearly with the session.

LangGraph's usual ``Annotated[list, add_messages]`` channel is a *value* channel: every
checkpoint (one per node) re-serialises the whole history, so a long session costs
O(turns x history) bytes (measured: 250 MB for 100 turns of 16 KB messages). Here the
``messages`` key and the compaction records live in a
:class:`langgraph.channels.DeltaChannel`: a checkpoint stores only the *new* writes of
the step, and the value is rebuilt on load by replaying the writes through a reducer.

DeltaChannel requires the reducer to be deterministic and batching-invariant,
``r(r(s, xs), ys) == r(s, xs + ys)``. :func:`fold_messages` is a left fold over single
messages with the semantics of :func:`langgraph.graph.message.add_messages` (append,
replace by id, :class:`~langchain_core.messages.RemoveMessage`,
``REMOVE_ALL_MESSAGES``), which makes it batching-invariant by construction; messages
that arrive without an id get a *deterministic* id derived from their position and
content (``add_messages`` uses ``uuid4``, which would give a different id on every
replay), and the caller's message objects are never mutated.

The default checkpointer is a SQLite file: ``$KIMI_CONTEXT_DB`` if set, else
``~/.local/share/langchain-kimi-context/checkpoints.sqlite``, created on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    BaseMessageChunk,
    RemoveMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
)
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from langchain_kimi_context.errors import KimiConfigurationError

__all__ = [
    "DB_ENV_VAR",
    "DEFAULT_SNAPSHOT_FREQUENCY",
    "KimiSqliteSaver",
    "ZlibCodec",
    "append_items",
    "default_checkpoint_path",
    "delta_channel",
    "fold_messages",
    "last_value",
    "merge_dicts",
    "messages_channel",
    "open_sqlite_checkpointer",
    "records_channel",
]

DB_ENV_VAR = "KIMI_CONTEXT_DB"
"""Environment variable naming the default SQLite checkpoint file."""

DEFAULT_SNAPSHOT_FREQUENCY = 1000
"""Channel updates between two full snapshots of a delta channel.

A snapshot re-serialises the whole value (bounded replay on load, more bytes); between
snapshots a checkpoint stores only the step's writes. One turn updates ``messages``
about 2-4 times, so the default snapshots every few hundred turns; on load the writes
since the last snapshot are replayed in one reducer call.
"""

_ID_NAMESPACE = uuid.UUID("6f1c3c5e-7a52-4c55-9a3e-0b8f7c1d2e41")


def default_checkpoint_path() -> Path:
    """Return the default SQLite checkpoint file (not created here).

    ``$KIMI_CONTEXT_DB`` wins; otherwise
    ``$XDG_DATA_HOME/langchain-kimi-context/checkpoints.sqlite`` with ``XDG_DATA_HOME``
    defaulting to ``~/.local/share``.

    Returns:
        The path.

    Example:
        >>> import os
        >>> os.environ["KIMI_CONTEXT_DB"] = "/tmp/kimi-doctest.sqlite"
        >>> str(default_checkpoint_path())
        '/tmp/kimi-doctest.sqlite'
        >>> del os.environ["KIMI_CONTEXT_DB"]
        >>> default_checkpoint_path().name
        'checkpoints.sqlite'
    """
    env = os.environ.get(DB_ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "langchain-kimi-context" / "checkpoints.sqlite"


class ZlibCodec:
    """A ``CipherProtocol`` codec that zlib-compresses checkpoint payloads.

    Plugged into LangGraph's own
    :class:`~langgraph.checkpoint.serde.encrypted.EncryptedSerializer` (which tags each
    blob with the codec name), it compresses blobs of at least ``min_bytes`` and stores
    smaller ones as they are. Blobs written without it still load.

    Args:
        level: zlib level (1 = fastest).
        min_bytes: Smaller payloads are stored uncompressed.

    Example:
        >>> codec = ZlibCodec()
        >>> name, data = codec.encrypt(b"abc" * 1000)
        >>> name, len(data) < 100, codec.decrypt(name, data) == b"abc" * 1000
        ('zlib', True, True)
        >>> codec.encrypt(b"tiny")
        ('raw', b'tiny')
    """

    def __init__(self, level: int = 1, min_bytes: int = 512) -> None:
        self.level = level
        self.min_bytes = min_bytes

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Compress ``plaintext`` (the serializer's "encrypt" hook).

        Args:
            plaintext: The serialised blob.

        Returns:
            ``("zlib", compressed)`` or ``("raw", plaintext)`` for small blobs.

        Example:
            >>> ZlibCodec(min_bytes=0).encrypt(b"x" * 100)[0]
            'zlib'
        """
        if len(plaintext) < self.min_bytes:
            return "raw", plaintext
        return "zlib", zlib.compress(plaintext, self.level)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """Decompress a blob written by :meth:`encrypt`.

        Args:
            ciphername: ``"zlib"`` or ``"raw"``.
            ciphertext: The stored bytes.

        Returns:
            The serialised blob.

        Raises:
            ValueError: Unknown codec name.

        Example:
            >>> ZlibCodec().decrypt("raw", b"x")
            b'x'
        """
        if ciphername == "zlib":
            return zlib.decompress(ciphertext)
        if ciphername == "raw":
            return ciphertext
        raise ValueError(f"Unknown checkpoint codec {ciphername!r} (expected 'zlib' or 'raw')")


_CacheKey = tuple[str, str, frozenset[str]]


class KimiSqliteSaver(SqliteSaver):
    """``SqliteSaver`` with compressed blobs and an incremental delta-history cache.

    Loading a :class:`~langgraph.channels.DeltaChannel` means walking the checkpoint
    chain and deserialising every write since the last snapshot: O(history) per
    ``invoke``. This saver remembers, per thread, the delta histories it returned for
    the last few checkpoints; the next load walks only the checkpoints written since
    (a handful per turn) and reuses the rest, so the per-turn cost stops growing with
    the session. Anything unexpected (a fork, a cache miss, a long walk) falls back to
    the stock implementation, so results are always those of ``SqliteSaver``.

    Args:
        conn: The SQLite connection (``check_same_thread=False``).
        serde: Serializer; default = LangGraph's ``JsonPlusSerializer`` wrapped in
            ``EncryptedSerializer(ZlibCodec())`` (compressed blobs).
        cache_threads: Threads whose histories are kept in memory (LRU).
        max_walk: Checkpoints walked looking for a cached ancestor before falling back.

    Example:
        >>> import sqlite3
        >>> saver = KimiSqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
        >>> saver.setup(); type(saver.serde).__name__
        'EncryptedSerializer'
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        serde: Any = None,
        cache_threads: int = 32,
        max_walk: int = 256,
    ) -> None:
        if serde is None:
            serde = EncryptedSerializer(ZlibCodec(), JsonPlusSerializer())
        super().__init__(conn, serde=serde)
        self._delta_cache: OrderedDict[
            _CacheKey, OrderedDict[str, Mapping[str, DeltaChannelHistory]]
        ] = OrderedDict()
        self._delta_lock = threading.Lock()
        self._cache_threads = cache_threads
        self._max_walk = max_walk

    def _remember(
        self, key: _CacheKey, checkpoint_id: str, hist: Mapping[str, DeltaChannelHistory]
    ) -> None:
        with self._delta_lock:
            per = self._delta_cache.setdefault(key, OrderedDict())
            per[checkpoint_id] = hist
            per.move_to_end(checkpoint_id)
            while len(per) > 4:
                per.popitem(last=False)
            self._delta_cache.move_to_end(key)
            while len(self._delta_cache) > self._cache_threads:
                self._delta_cache.popitem(last=False)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Delta histories of ``channels`` at the checkpoint of ``config``, incrementally.

        Args:
            config: Identifies the target checkpoint.
            channels: Delta channel names.

        Returns:
            The same mapping ``SqliteSaver`` returns (seed + writes per channel).

        Example:
            >>> import sqlite3
            >>> s = KimiSqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
            >>> s.setup()
            >>> s.get_delta_channel_history(
            ...     config={"configurable": {"thread_id": "t"}}, channels=["messages"])
            {'messages': {'writes': []}}
        """
        if not channels:
            return {}
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = str(conf.get("checkpoint_ns", ""))
        target_id = conf.get("checkpoint_id")
        target = self.get_tuple(config)
        if target is None:
            return {ch: {"writes": []} for ch in channels}
        target_id = target.config["configurable"]["checkpoint_id"]
        key: _CacheKey = (thread_id, ns, frozenset(channels))
        with self._delta_lock:
            known = dict(self._delta_cache.get(key, {}))
        if target_id in known:
            return _copy_hist(known[target_id], channels)
        result: Mapping[str, DeltaChannelHistory] | None = None
        if known:
            result = self._walk_to_cached(target.parent_config, known, channels)
        if result is None:
            result = super().get_delta_channel_history(config=target.config, channels=channels)
        self._remember(key, target_id, _copy_hist(result, channels))
        return result

    def _walk_to_cached(
        self,
        cursor: RunnableConfig | None,
        known: Mapping[str, Mapping[str, DeltaChannelHistory]],
        channels: Sequence[str],
    ) -> Mapping[str, DeltaChannelHistory] | None:
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        steps = 0
        while cursor is not None and remaining:
            steps += 1
            if steps > self._max_walk:
                return None
            tup = self.get_tuple(cursor)
            if tup is None:
                return None
            for write in reversed(tup.pending_writes or []):
                if write[1] in remaining:
                    collected[write[1]].append(write)
            cid = tup.config["configurable"]["checkpoint_id"]
            for ch in list(remaining):
                if ch in tup.checkpoint["channel_values"]:
                    seeds[ch] = tup.checkpoint["channel_values"][ch]
                    remaining.discard(ch)
            if remaining and cid in known:
                base = known[cid]
                out: dict[str, DeltaChannelHistory] = {}
                for ch in channels:
                    newer = list(reversed(collected[ch]))
                    if ch in remaining:
                        entry: DeltaChannelHistory = {"writes": [*base[ch]["writes"], *newer]}
                        if "seed" in base[ch]:
                            entry["seed"] = base[ch]["seed"]
                    else:
                        entry = {"writes": newer, "seed": seeds[ch]}
                    out[ch] = entry
                return out
            cursor = tup.parent_config
        return None  # reached the root or seeds without meeting a cached checkpoint

    # --- async API: the sync implementation in a worker thread ---------------------
    # (SqliteSaver itself refuses async use; this lets ``agent.ainvoke`` work on the
    # default checkpointer. The saver's lock serialises access to the connection.)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple` (runs in a worker thread).

        Args:
            config: Identifies the checkpoint.

        Returns:
            The checkpoint tuple, or ``None``.

        Example:
            >>> import asyncio, sqlite3
            >>> s = KimiSqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
            >>> asyncio.run(s.aget_tuple({"configurable": {"thread_id": "none"}})) is None
            True
        """
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list` (runs in a worker thread).

        Args:
            config: Thread to list.
            filter: Metadata filter.
            before: List checkpoints before this one.
            limit: Maximum number of checkpoints.

        Yields:
            Checkpoint tuples, newest first.

        Example:
            >>> import asyncio, sqlite3
            >>> s = KimiSqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
            >>> async def count():
            ...     return len([t async for t in s.alist({"configurable": {"thread_id": "x"}})])
            >>> asyncio.run(count())
            0
        """
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async :meth:`put` (runs in a worker thread).

        Args:
            config: Where to store.
            checkpoint: The checkpoint.
            metadata: Its metadata.
            new_versions: Channel versions written.

        Returns:
            The config of the stored checkpoint.

        Example:
            >>> KimiSqliteSaver.aput.__name__
            'aput'
        """
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async :meth:`put_writes` (runs in a worker thread).

        Args:
            config: The checkpoint the writes belong to.
            writes: ``(channel, value)`` pairs.
            task_id: The task that wrote them.
            task_path: The task's path.

        Example:
            >>> KimiSqliteSaver.aput_writes.__name__
            'aput_writes'
        """
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread` (runs in a worker thread).

        Args:
            thread_id: The thread to delete.

        Example:
            >>> KimiSqliteSaver.adelete_thread.__name__
            'adelete_thread'
        """
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async :meth:`get_delta_channel_history` (runs in a worker thread).

        Args:
            config: Identifies the target checkpoint.
            channels: Delta channel names.

        Returns:
            Seed + writes per channel.

        Example:
            >>> KimiSqliteSaver.aget_delta_channel_history.__name__
            'aget_delta_channel_history'
        """
        return await asyncio.to_thread(
            lambda: self.get_delta_channel_history(config=config, channels=channels)
        )


def _copy_hist(
    hist: Mapping[str, DeltaChannelHistory], channels: Sequence[str]
) -> dict[str, DeltaChannelHistory]:
    out: dict[str, DeltaChannelHistory] = {}
    for ch in channels:
        entry: DeltaChannelHistory = {"writes": list(hist[ch]["writes"])}
        if "seed" in hist[ch]:
            entry["seed"] = hist[ch]["seed"]
        out[ch] = entry
    return out


def open_sqlite_checkpointer(path: str | os.PathLike[str] | None = None) -> KimiSqliteSaver:
    """Open (creating on first use) a SQLite checkpointer in a file.

    The connection is shared across threads (the saver serialises access with a lock)
    and runs in WAL mode with ``synchronous=NORMAL``, so a process killed mid-write never
    leaves a half-written checkpoint: the last committed checkpoint is what a restart
    sees (an OS crash or power loss may lose the last few commits, never corrupt them).

    Args:
        path: The database file; ``None`` = :func:`default_checkpoint_path`. Parent
            directories are created.

    Returns:
        A ready :class:`KimiSqliteSaver`.

    Raises:
        KimiConfigurationError: If the file cannot be created or opened (the message
            names the path, where it came from and the alternatives).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> saver = open_sqlite_checkpointer(os.path.join(d, "sub", "c.sqlite"))
        >>> os.path.exists(os.path.join(d, "sub", "c.sqlite"))
        True
        >>> saver.conn.close()
    """
    target = Path(path).expanduser() if path is not None else default_checkpoint_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(target), check_same_thread=False)
        saver = KimiSqliteSaver(conn)
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


def _content_digest(message: BaseMessage) -> str:
    content = message.content
    raw = content if isinstance(content, str) else json.dumps(content, sort_keys=True, default=str)
    h = hashlib.sha1(raw.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    if message.type == "ai":
        calls = getattr(message, "tool_calls", None) or []
        h.update(json.dumps(calls, sort_keys=True, default=str).encode())
    elif message.type == "tool":
        h.update(str(getattr(message, "tool_call_id", "")).encode())
    return h.hexdigest()


def _coerce(write: Any) -> list[BaseMessage]:
    items = write if isinstance(write, list) else [write]
    if all(isinstance(m, BaseMessage) and not isinstance(m, BaseMessageChunk) for m in items):
        return list(items)
    out: list[BaseMessage] = []
    for m in convert_to_messages(items):
        out.append(message_chunk_to_message(m) if isinstance(m, BaseMessageChunk) else m)
    return out


def fold_messages(state: Sequence[AnyMessage] | None, writes: Sequence[Any]) -> list[AnyMessage]:
    """Apply message writes to a history, ``add_messages``-style, batching-invariant.

    Each write is a message, a list of messages, or anything
    :func:`~langchain_core.messages.convert_to_messages` accepts. Messages are applied
    one by one, in order: a :class:`~langchain_core.messages.RemoveMessage` deletes the
    message with its id (``REMOVE_ALL_MESSAGES`` clears the list), a message whose id
    is present replaces it in place, any other message is appended. A message without
    an id gets a copy with a deterministic id (position + content), so replaying the
    stored writes always rebuilds identical ids. Inputs are never mutated.

    Args:
        state: The current history (``None`` = empty).
        writes: The batch of writes (one item per node write).

    Returns:
        The new history (a new list).

    Raises:
        ValueError: A ``RemoveMessage`` names an id that is not in the history.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
        >>> s = fold_messages([], [HumanMessage("hi", id="1"), [AIMessage("yo", id="2")]])
        >>> [m.content for m in fold_messages(s, [AIMessage("hey", id="2")])]
        ['hi', 'hey']
        >>> [m.id for m in fold_messages(s, [RemoveMessage(id="1")])]
        ['2']
        >>> a = fold_messages(fold_messages([], [HumanMessage("x")]), [HumanMessage("y")])
        >>> b = fold_messages([], [HumanMessage("x"), HumanMessage("y")])
        >>> [m.id for m in a] == [m.id for m in b]
        True
    """
    merged: list[Any] = list(state or [])
    index: dict[str | None, int] | None = None
    for write in writes:
        for message in _coerce(write):
            if isinstance(message, RemoveMessage):
                if message.id == REMOVE_ALL_MESSAGES:
                    merged = []
                    index = None
                    continue
                if index is None:
                    index = {m.id: i for i, m in enumerate(merged) if m.id is not None}
                pos = index.get(message.id) if message.id is not None else None
                if pos is None:
                    raise ValueError(
                        f"Attempting to delete a message with an ID that doesn't exist "
                        f"('{message.id}')"
                    )
                del merged[pos]
                index = None
                continue
            if message.id is None:
                if index is None:
                    index = {m.id: i for i, m in enumerate(merged) if m.id is not None}
                salt = 0
                digest = _content_digest(message)
                while True:
                    new_id = str(
                        uuid.uuid5(_ID_NAMESPACE, f"{len(merged)}:{salt}:{message.type}:{digest}")
                    )
                    if new_id not in index:
                        break
                    salt += 1
                message = message.model_copy(update={"id": new_id})
            if index is None:
                index = {m.id: i for i, m in enumerate(merged) if m.id is not None}
            pos = index.get(message.id)
            if pos is not None:
                merged[pos] = message
            else:
                index[message.id] = len(merged)
                merged.append(message)
    return merged


def append_items(state: Sequence[Any] | None, writes: Sequence[Any]) -> list[Any]:
    """Append-only reducer for small record lists (compaction records, events).

    Each write is one item or a list of items; lists are flattened one level. This is
    trivially batching-invariant, as :class:`~langgraph.channels.DeltaChannel` needs.

    Args:
        state: The current list (``None`` = empty).
        writes: The batch of writes.

    Returns:
        The new list.

    Example:
        >>> append_items([1], [2, [3, 4]])
        [1, 2, 3, 4]
    """
    out = list(state or [])
    for w in writes:
        if isinstance(w, list | tuple):
            out.extend(w)
        else:
            out.append(w)
    return out


def last_value(state: Any, writes: Sequence[Any]) -> Any:
    """Reducer keeping the last write (``LastValue`` semantics), batching-invariant.

    Args:
        state: The current value.
        writes: The batch of writes.

    Returns:
        The last write, or ``state`` when there is none.

    Example:
        >>> last_value({"a": 1}, [{"b": 2}, {"c": 3}])
        {'c': 3}
    """
    return writes[-1] if writes else state


def merge_dicts(state: Any, writes: Sequence[Any]) -> dict[str, Any]:
    """Reducer merging dict writes key by key (later wins), batching-invariant.

    Args:
        state: The current dict.
        writes: The batch of dict writes.

    Returns:
        The merged dict.

    Example:
        >>> merge_dicts({"a": 1, "b": 1}, [{"b": 2}, {"c": 3}])
        {'a': 1, 'b': 2, 'c': 3}
    """
    out = dict(state or {})
    for w in writes:
        out.update(w or {})
    return out


def delta_channel(
    reducer: Callable[[Any, Sequence[Any]], Any],
    typ: type[Any],
    snapshot_frequency: int = DEFAULT_SNAPSHOT_FREQUENCY,
) -> DeltaChannel[Any]:
    """A delta channel for a small package key (reports, turn, usage, context).

    SQLite checkpoints re-serialise every plain channel at every node; in a delta
    channel a key costs bytes only in the steps that write it.

    Args:
        reducer: A batching-invariant reducer (:func:`last_value`, :func:`merge_dicts`,
            :func:`append_items`).
        typ: The value type.
        snapshot_frequency: Updates between full snapshots.

    Returns:
        The channel.

    Example:
        >>> delta_channel(last_value, dict).snapshot_frequency == DEFAULT_SNAPSHOT_FREQUENCY
        True
    """
    return DeltaChannel(reducer, typ, snapshot_frequency=snapshot_frequency)


def messages_channel(snapshot_frequency: int = DEFAULT_SNAPSHOT_FREQUENCY) -> DeltaChannel[Any]:
    """The delta channel used for the ``messages`` key.

    Args:
        snapshot_frequency: Updates between full snapshots (see
            :data:`DEFAULT_SNAPSHOT_FREQUENCY`).

    Returns:
        A :class:`~langgraph.channels.DeltaChannel` reducing with :func:`fold_messages`.

    Example:
        >>> messages_channel(50).snapshot_frequency
        50
    """
    return DeltaChannel(fold_messages, list, snapshot_frequency=snapshot_frequency)


def records_channel(snapshot_frequency: int = DEFAULT_SNAPSHOT_FREQUENCY) -> DeltaChannel[Any]:
    """The delta channel used for append-only record lists (compaction records).

    Args:
        snapshot_frequency: Updates between full snapshots.

    Returns:
        A :class:`~langgraph.channels.DeltaChannel` reducing with :func:`append_items`.

    Example:
        >>> records_channel().snapshot_frequency == DEFAULT_SNAPSHOT_FREQUENCY
        True
    """
    return DeltaChannel(append_items, list, snapshot_frequency=snapshot_frequency)
