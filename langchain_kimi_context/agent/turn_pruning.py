"""Turn pruning and remembered delta histories, for any checkpoint saver.

:class:`TurnPruningMixin` gives a LangGraph saver the package's storage behaviour on top
of its own tables; the saver supplies a few storage primitives (load a page of the
parent chain, count children, apply a :class:`Squash`, keep only the latest checkpoint;
both SQL savers get them from
:class:`~langchain_kimi_context.agent.sql_storage.SqlStorageMixin`):

* ``prune(thread_ids, strategy="keep_turns")`` squashes the node checkpoints of the
  turns before the latest: one checkpoint per finished turn stays (its last, same id);
  the delta-channel writes (and seeds) of the removed ones move into an *incoming*
  record of the kept checkpoint (:mod:`~langchain_kimi_context.agent.delta_chain`), so
  every kept state loads exactly as before. A checkpoint is removed only when it is an
  ``input``/``loop`` checkpoint with exactly one child, a ``loop`` checkpoint, that no
  write to the pin channel names (compaction snapshots); ``update_state`` checkpoints,
  forks and the latest turn always stay. ``"keep_latest"`` keeps one checkpoint per
  namespace with its whole delta history; ``"delete"`` deletes the threads.
* ``get_delta_channel_history`` walks only as far as the nearest remembered checkpoint
  and derives a parent's history from its child's, so loading the next state of a
  thread reads what was written since, and browsing a history is linear.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    DeltaChannelHistory,
    get_checkpoint_id,
)

from langchain_kimi_context.agent.delta_chain import (
    RESERVED_PREFIXES,
    ChainBrokenError,
    ChainNode,
    derive_parent_history,
    walk,
    with_seed,
)

__all__ = ["PRUNE_STRATEGIES", "Histories", "Squash", "TurnPruningMixin", "delta_like_channels"]

PRUNE_STRATEGIES = ("keep_turns", "keep_latest", "delete")
"""Strategies of :meth:`TurnPruningMixin.prune`."""

CHAIN_PAGE = 512
"""Most ancestors fetched per round trip when a history is read cold."""

_Memo = OrderedDict[str, tuple[ChainNode, dict[str, DeltaChannelHistory]]]

Histories = Mapping[str, DeltaChannelHistory]
"""Delta histories by channel (LangGraph's ``DeltaChannelHistory``: seed + writes)."""


@dataclass(frozen=True, slots=True)
class Squash:
    """One squash of turn pruning, for a saver to apply in one transaction.

    The checkpoints ``removed`` (all between ``keep_id`` and ``stop_id``) are deleted with
    their writes and incoming records; ``keep_id`` gets ``stop_id`` as its parent, loses
    its snapshot counters (only the latest checkpoint's steer a run) and stores
    ``incoming`` as its incoming record; the pending writes of ``stop_id`` to the
    ``moved`` channels are deleted (they are in ``incoming`` now).

    Attributes:
        keep_id: The checkpoint that stays (same id).
        removed: The checkpoints squashed away.
        stop_id: The new parent of ``keep_id`` (``None`` past the root).
        moved: Channels whose writes at ``stop_id`` moved into ``incoming``.
        incoming: The incoming record of ``keep_id``.
    """

    keep_id: str
    removed: Sequence[str]
    stop_id: str | None
    moved: Sequence[str]
    incoming: Histories


def delta_like_channels(node: ChainNode) -> list[str]:
    """Channels of ``node`` whose value is rebuilt from writes (versioned, not stored).

    Args:
        node: A checkpoint.

    Returns:
        The channel names, sorted.
    """
    return sorted(
        ch for ch in node.versions if ch not in node.values and not ch.startswith(RESERVED_PREFIXES)
    )


def copy_histories(
    hist: Mapping[str, DeltaChannelHistory], channels: Sequence[str]
) -> dict[str, DeltaChannelHistory]:
    """Fresh lists for ``channels`` of ``hist`` (the values themselves are shared).

    Args:
        hist: Histories.
        channels: The channels wanted.

    Returns:
        A copy.
    """
    return {ch: with_seed({"writes": list(hist[ch]["writes"])}, hist[ch]) for ch in channels}


class TurnPruningMixin:
    """Turn pruning and history memory over a saver's storage primitives.

    Subclasses call :meth:`_init_pruning` in ``__init__`` and implement the primitives
    (``_reading``, ``_writing``, ``_load_chain``, ``_child_counts``, ``_apply_squash``,
    ``_apply_keep_latest``, ``_namespaces``, ``_latest_id``; as
    :class:`~langchain_kimi_context.agent.sql_storage.SqlStorageMixin` does), list it before the
    LangGraph saver class (its ``put``/``put_writes`` wrap the saver's), and forget a
    deleted thread in ``delete_thread`` (:meth:`_forget`).
    """

    prune_turns: bool
    pin_channel: str
    get_tuple: Callable[[RunnableConfig], Any]
    delete_thread: Callable[[str], None]

    def _init_pruning(self, *, cache_threads: int, prune_turns: bool, pin_channel: str) -> None:
        self._memo: OrderedDict[tuple[str, str], _Memo] = OrderedDict()
        self._memo_lock = threading.RLock()
        self._cache_threads = cache_threads
        self.prune_turns = prune_turns
        self.pin_channel = pin_channel

    # --- storage primitives (implemented by the saver) --------------------------------

    def _reading(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _load_chain(
        self, h: Any, thread_id: str, ns: str, checkpoint_id: str, *, depth: int
    ) -> dict[str, ChainNode]:
        raise NotImplementedError

    def _child_counts(self, h: Any, thread_id: str, ns: str, ids: Sequence[str]) -> dict[str, int]:
        raise NotImplementedError

    def _apply_squash(self, h: Any, thread_id: str, ns: str, squash: Squash) -> None:
        raise NotImplementedError

    def _apply_keep_latest(
        self, h: Any, thread_id: str, ns: str, keep_id: str, incoming: Histories
    ) -> None:
        raise NotImplementedError

    def _namespaces(self, h: Any, thread_id: str) -> list[str]:
        raise NotImplementedError

    def _latest_id(self, h: Any, thread_id: str, ns: str) -> str | None:
        raise NotImplementedError

    # --- loaders ---------------------------------------------------------------------

    def _load_node(self, h: Any, thread_id: str, ns: str, checkpoint_id: str) -> ChainNode | None:
        return self._load_chain(h, thread_id, ns, checkpoint_id, depth=1).get(checkpoint_id)

    def _chain_loader(self, h: Any, thread_id: str, ns: str) -> Callable[[str], ChainNode | None]:
        """A node loader fetching ancestors in pages of 16, 32, ... ``CHAIN_PAGE``.

        A walk that meets a remembered ancestor soon reads little; a cold walk over a
        long session takes a few round trips.
        """
        cache: dict[str, ChainNode] = {}
        page = [16]  # a turn is about a dozen checkpoints

        def load(cid: str) -> ChainNode | None:
            if cid not in cache:
                cache.update(self._load_chain(h, thread_id, ns, cid, depth=page[0]))
                page[0] = min(page[0] * 2, CHAIN_PAGE)
            return cache.get(cid)

        return load

    # --- memory of delta histories ------------------------------------------------------

    def _thread_memo(self, thread_id: str, ns: str) -> _Memo:
        key = (thread_id, ns)
        with self._memo_lock:
            memo = self._memo.get(key)
            if memo is None:
                memo = self._memo[key] = OrderedDict()
            self._memo.move_to_end(key)
            while len(self._memo) > self._cache_threads:
                self._memo.popitem(last=False)
            return memo

    def _remember(
        self, memo: _Memo, node: ChainNode, hist: Mapping[str, DeltaChannelHistory]
    ) -> None:
        with self._memo_lock:
            old = memo.get(node.checkpoint_id)
            memo[node.checkpoint_id] = (node, {**(old[1] if old else {}), **hist})
            memo.move_to_end(node.checkpoint_id)
            while len(memo) > 16:
                memo.popitem(last=False)

    def _drop(
        self, thread_id: str, ns: str, checkpoint_ids: Sequence[str], *, children: bool
    ) -> None:
        with self._memo_lock:
            memo = self._memo.get((thread_id, ns))
            if memo is None:
                return
            gone = set(checkpoint_ids)
            if children:
                gone.update(k for k, (node, _) in memo.items() if node.parent_id in gone)
            for cid in gone:
                memo.pop(cid, None)

    def _forget(self, thread_id: str | None = None) -> None:
        with self._memo_lock:
            if thread_id is None:
                self._memo.clear()
                return
            for key in [k for k in self._memo if k[0] == thread_id]:
                del self._memo[key]

    def _forget_checkpoint(self, config: RunnableConfig, checkpoint_id: str) -> None:
        conf = config["configurable"]
        self._drop(
            str(conf["thread_id"]),
            str(conf.get("checkpoint_ns", "")),
            [checkpoint_id],
            children=False,
        )

    def _forget_writes(self, config: RunnableConfig) -> None:
        conf = config["configurable"]
        self._drop(
            str(conf["thread_id"]),
            str(conf.get("checkpoint_ns", "")),
            [str(conf.get("checkpoint_id"))],
            children=True,
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint (the saver's own ``put``); a re-put id is forgotten.

        Args:
            config: Where to store.
            checkpoint: The checkpoint.
            metadata: Its metadata.
            new_versions: Channel versions written.

        Returns:
            The config of the stored checkpoint.
        """
        self._forget_checkpoint(config, checkpoint["id"])
        return super().put(config, checkpoint, metadata, new_versions)  # type: ignore[misc]

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes (the saver's own ``put_writes``), forgetting what they change.

        Args:
            config: The checkpoint the writes belong to.
            writes: ``(channel, value)`` pairs.
            task_id: The task that wrote them.
            task_path: The task's path.
        """
        self._forget_writes(config)
        super().put_writes(config, writes, task_id, task_path)  # type: ignore[misc]

    # --- reading ---------------------------------------------------------------------

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Delta histories of ``channels`` at the checkpoint of ``config``.

        Walks the chain (incoming records included) only as far as the nearest
        remembered checkpoint; a parent of a remembered checkpoint is derived from it.

        Args:
            config: Identifies the target checkpoint.
            channels: Delta channel names.

        Returns:
            ``{channel: DeltaChannelHistory}`` (seed + writes).
        """
        if not channels:
            return {}
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = str(conf.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:
            latest = self.get_tuple(config)
            if latest is None:
                return {ch: {"writes": []} for ch in channels}
            checkpoint_id = latest.config["configurable"]["checkpoint_id"]
        for _attempt in range(3):
            try:
                return self._history(thread_id, ns, checkpoint_id, channels)
            except ChainBrokenError:
                self._forget(thread_id)  # pruned meanwhile by another connection
        return self._history(thread_id, ns, checkpoint_id, channels)

    def _history(
        self, thread_id: str, ns: str, checkpoint_id: str, channels: Sequence[str]
    ) -> dict[str, DeltaChannelHistory]:
        with self._reading() as h:
            memo = self._thread_memo(thread_id, ns)
            with self._memo_lock:
                hit = memo.get(checkpoint_id)
                entries = list(memo.values())
            if hit is not None and all(ch in hit[1] for ch in channels):
                return copy_histories(hit[1], channels)
            target = self._load_node(h, thread_id, ns, checkpoint_id)
            if target is None:
                return {ch: {"writes": []} for ch in channels}
            for child, child_hist in reversed(entries):
                if child.parent_id == checkpoint_id:
                    derived = derive_parent_history(child, child_hist, target, channels)
                    if derived is not None:
                        self._remember(memo, target, derived)
                        return copy_histories(derived, channels)

            def known(cid: str) -> Mapping[str, DeltaChannelHistory] | None:
                with self._memo_lock:
                    entry = memo.get(cid)
                return entry[1] if entry else None

            warm = target.parent_id is not None and known(target.parent_id) is not None
            load = (
                (lambda cid: self._load_node(h, thread_id, ns, cid))
                if warm
                else self._chain_loader(h, thread_id, ns)
            )
            hist, _ = walk(target, channels, load, known=known)
            self._remember(memo, target, hist)
            return copy_histories(hist, channels)

    # --- pruning -----------------------------------------------------------------------

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_turns") -> None:
        """Prune checkpoints of the given threads; every kept state loads as before.

        Args:
            thread_ids: Threads to prune.
            strategy: ``"keep_turns"`` keeps one checkpoint per finished turn (its last)
                plus every checkpoint of the latest turn, update checkpoints, forks and
                pinned snapshots; ``"keep_latest"`` keeps only the latest checkpoint of
                each namespace (its delta channels' whole history moves into its
                incoming record); ``"delete"`` deletes the threads.

        Raises:
            TypeError: ``thread_ids`` is a single string.
            ValueError: Unknown strategy.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread ids, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(
                f"Unknown prune strategy {strategy!r}: use one of {', '.join(PRUNE_STRATEGIES)}"
            )
        for thread_id in (str(t) for t in thread_ids):
            if strategy == "delete":
                self.delete_thread(thread_id)
            elif strategy == "keep_latest":
                self._keep_latest(thread_id)
            else:
                latest = self.get_tuple({"configurable": {"thread_id": thread_id}})
                if latest is None:
                    continue
                start = self._turn_start(thread_id, latest.config["configurable"]["checkpoint_id"])
                if start is not None:
                    self._prune_finished(thread_id, "", start)

    def _turn_start(self, thread_id: str, latest_id: str) -> str | None:
        """Parent of the input checkpoint of the latest turn (the turn before it ends there)."""
        with self._reading() as h:
            load = self._chain_loader(h, thread_id, "")
            node = load(latest_id)
            while node is not None and node.source != "input":
                if node.parent_id is None:
                    return None
                node = load(node.parent_id)
            return node.parent_id if node is not None else None

    def _keep_latest(self, thread_id: str) -> None:
        with self._writing() as h:
            for ns in self._namespaces(h, thread_id):
                latest = self._latest_id(h, thread_id, ns)
                keep = self._load_node(h, thread_id, ns, latest) if latest else None
                if keep is None:
                    continue
                load = self._chain_loader(h, thread_id, ns)
                hist, _ = walk(keep, delta_like_channels(keep), load)
                self._apply_keep_latest(h, thread_id, ns, keep.checkpoint_id, _nonempty(hist))
        self._forget(thread_id)

    def _prune_finished(self, thread_id: str, ns: str, start_id: str) -> None:
        """Squash the intermediate checkpoints of finished turns ending at ``start_id``.

        Walks back from ``start_id`` (kept) to a checkpoint that an earlier pruning kept
        (it has an incoming record) or the root.
        """
        with self._writing() as h:
            chain: list[ChainNode] = []
            load = self._chain_loader(h, thread_id, ns)
            node = load(start_id)
            while node is not None:
                chain.append(node)
                if (len(chain) > 1 and node.incoming) or node.parent_id is None:
                    break
                node = load(node.parent_id)
            if len(chain) < 2:
                return
            children = self._child_counts(h, thread_id, ns, [n.checkpoint_id for n in chain])
            pins: set[str] = set()
            for link in chain:
                for w in link.writes:
                    if w[1] == self.pin_channel:
                        pins.update(str(v) for v in (w[2] if isinstance(w[2], list) else [w[2]]))
            changed: list[str] = []
            kept: list[str] = []
            for first, end in squash_plan(chain, children, pins):
                keep, run = chain[first - 1], chain[first:end]
                stop = chain[end] if end < len(chain) else None
                self._squash(h, thread_id, ns, keep=keep, run=run, load=load)
                changed.extend(n.checkpoint_id for n in run)
                if stop is not None:
                    changed.append(stop.checkpoint_id)
                kept.append(keep.checkpoint_id)
            # a kept checkpoint's value is unchanged: remember it with its new shape
            self._drop(thread_id, ns, changed, children=False)
            memo = self._thread_memo(thread_id, ns)
            for cid in kept:
                with self._memo_lock:
                    entry = memo.get(cid)
                fresh = self._load_node(h, thread_id, ns, cid) if entry is not None else None
                if entry is not None and fresh is not None:
                    with self._memo_lock:
                        memo[cid] = (fresh, entry[1])

    def _squash(
        self,
        h: Any,
        thread_id: str,
        ns: str,
        *,
        keep: ChainNode,
        run: list[ChainNode],
        load: Callable[[str], ChainNode | None],
    ) -> None:
        """Fold ``run`` (newest first, all between ``keep`` and its new parent) away."""
        stop = run[-1].parent_id
        hist, _ = walk(keep, delta_like_channels(keep), load, stop_at=stop)
        squash = Squash(
            keep_id=keep.checkpoint_id,
            removed=[n.checkpoint_id for n in run],
            stop_id=stop,
            moved=[ch for ch, hh in hist.items() if hh["writes"]] if stop is not None else [],
            incoming=_nonempty(hist),
        )
        self._apply_squash(h, thread_id, ns, squash)


def squash_plan(
    chain: Sequence[ChainNode], children: Mapping[str, int], pins: set[str]
) -> Iterator[tuple[int, int]]:
    """Runs of ``chain`` to squash, as ``(first, end)`` index ranges.

    ``chain[0]`` is kept and ``chain[i + 1]`` is the parent of ``chain[i]``. A run
    ``chain[first:end]`` is squashed into ``chain[first - 1]``; its new parent is
    ``chain[end]`` (``None`` past the root), which must have that run as its only child.

    Args:
        chain: Checkpoints, newest first.
        children: Child count per checkpoint id.
        pins: Checkpoint ids that must stay.

    Yields:
        ``(first, end)`` ranges.
    """
    n = len(chain)

    def intermediate(i: int) -> bool:
        node, child = chain[i], chain[i - 1]
        return (
            node.source in ("input", "loop")
            and child.source == "loop"
            and children.get(node.checkpoint_id) == 1
            and node.checkpoint_id not in pins
            and not node.incoming
            and (i < n - 1 or node.parent_id is None)
        )

    i = 1
    while i < n:
        if not intermediate(i):
            i += 1
            continue
        first = i
        while i < n and intermediate(i):
            i += 1
        if i == n or children.get(chain[i].checkpoint_id) == 1:
            yield first, i


def _nonempty(hist: Mapping[str, DeltaChannelHistory]) -> dict[str, DeltaChannelHistory]:
    return {ch: h for ch, h in hist.items() if h["writes"] or "seed" in h}
