"""The delta chain of a thread: how a checkpoint's delta-channel value is rebuilt.

A :class:`~langgraph.channels.DeltaChannel` value at checkpoint ``C`` is its nearest
seed (a full value stored in an ancestor's ``channel_values``) followed by every write
stored on the way from that seed to ``C``. Two kinds of writes sit on the way:

* a checkpoint's own *pending writes* feed its child (LangGraph's rule);
* an *incoming* record, stored next to a checkpoint by turn pruning, holds the writes
  (and seeds) of the checkpoints that were squashed away between the checkpoint and
  its parent: they are part of the checkpoint's own value.

So, walking from a target ``T`` to the root: ``T``'s incoming record, then for every
ancestor ``P``: ``P``'s pending writes, then ``P``'s seed (stop) or ``P``'s incoming
record. :func:`walk` implements exactly that over a node loader, stopping early at an
ancestor whose history is already known (``known``). The contract of the result is
LangGraph's ``DeltaChannelHistory`` (``{"seed"?: value, "writes": [PendingWrite]}``).

The module is storage-agnostic: a saver supplies ``load(checkpoint_id) -> ChainNode``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import DeltaChannelHistory, PendingWrite

__all__ = [
    "INCOMING_TASK_ID",
    "RESERVED_PREFIXES",
    "ChainBrokenError",
    "ChainNode",
    "decode_incoming",
    "derive_parent_history",
    "encode_incoming",
    "walk",
    "with_seed",
]

INCOMING_TASK_ID = "kimi-incoming"
"""Task id of the writes returned from an incoming record (only values are replayed)."""

RESERVED_PREFIXES = ("__", "branch:")
"""LangGraph's own channels (triggers, tasks, errors): never delta channels."""


class ChainBrokenError(RuntimeError):
    """An ancestor vanished mid-walk (pruned by another connection): walk again."""


@dataclass(slots=True)
class ChainNode:
    """What the walk needs of one checkpoint.

    Attributes:
        checkpoint_id: The checkpoint.
        parent_id: Its parent (``None`` at the root).
        values: Its ``channel_values`` (seeds of delta channels, values of others).
        writes: Its pending writes, in ``writes_sort_key`` order.
        incoming: Its incoming record ``{channel: DeltaChannelHistory}``.
        source: ``metadata["source"]`` (``"input"``, ``"loop"``, ``"update"``...).
        versions: Channels with a version in the checkpoint.
    """

    checkpoint_id: str
    parent_id: str | None
    values: Mapping[str, Any]
    writes: Sequence[PendingWrite]
    incoming: Mapping[str, DeltaChannelHistory] = field(default_factory=dict)
    source: str | None = None
    versions: frozenset[str] = frozenset()

    def writes_for(self, channel: str) -> list[PendingWrite]:
        """This checkpoint's pending writes to ``channel``, in order."""
        return [w for w in self.writes if w[1] == channel]


def with_seed(entry: DeltaChannelHistory | dict[str, Any], source: Mapping[str, Any]) -> Any:
    """``entry`` with the seed of ``source``, when it has one.

    A history, a stored incoming record and their copies all carry their seed this way:
    a missing ``seed`` key means "no seed on the way", unlike a seed whose value is None.

    Args:
        entry: A new history or record (changed in place).
        source: The history or record it derives from.

    Returns:
        ``entry``.
    """
    if "seed" in source:
        entry["seed"] = source["seed"]
    return entry


def walk(
    target: ChainNode,
    channels: Iterable[str],
    load: Callable[[str], ChainNode | None],
    *,
    known: Callable[[str], Mapping[str, DeltaChannelHistory] | None] = lambda _cid: None,
    stop_at: str | None = None,
) -> tuple[dict[str, DeltaChannelHistory], list[ChainNode]]:
    """Rebuild the delta histories of ``channels`` at ``target``.

    Args:
        target: The checkpoint whose value is wanted.
        channels: Delta channel names.
        load: Loads an ancestor by id (``None`` = missing: raises ChainBrokenError).
        known: Returns an ancestor's already-computed histories (or ``None``); the walk
            stops at the first ancestor known for every remaining channel.
        stop_at: Stop before this ancestor's *value* (its pending writes are still
            collected): the result is then relative to it (turn pruning).

    Returns:
        ``(histories, visited ancestors)``; ``histories[ch]`` has a ``seed`` when one
        was found.

    Raises:
        ChainBrokenError: A parent id pointed at a checkpoint that no longer exists.
    """
    remaining = list(dict.fromkeys(channels))
    rev: dict[str, list[PendingWrite]] = {ch: [] for ch in remaining}
    out: dict[str, DeltaChannelHistory] = {}

    def finish(ch: str, seed: Any = None, has_seed: bool = False) -> None:
        entry: DeltaChannelHistory = {"writes": list(reversed(rev[ch]))}
        if has_seed:
            entry["seed"] = seed
        out[ch] = entry

    def take_incoming(node: ChainNode) -> None:
        for ch in list(remaining):
            inc = node.incoming.get(ch)
            if inc is None:
                continue
            rev[ch].extend(reversed(inc["writes"]))
            if "seed" in inc:
                finish(ch, inc["seed"], True)
                remaining.remove(ch)

    visited: list[ChainNode] = []
    take_incoming(target)
    parent_id = target.parent_id
    while remaining and parent_id is not None:
        if parent_id == stop_at:
            node = load(parent_id)
            if node is None:
                raise ChainBrokenError(parent_id)
            for w in reversed(node.writes):
                if w[1] in rev and w[1] in remaining:
                    rev[w[1]].append(w)
            break
        base = known(parent_id)
        node = load(parent_id)
        if node is None:
            raise ChainBrokenError(parent_id)
        visited.append(node)
        if base is not None and all(ch in base for ch in remaining):
            for ch in remaining:
                hist = base[ch]
                writes = [*hist["writes"], *node.writes_for(ch), *reversed(rev[ch])]
                out[ch] = with_seed({"writes": writes}, hist)
            remaining = []
            break
        for w in reversed(node.writes):
            if w[1] in remaining:
                rev[w[1]].append(w)
        for ch in list(remaining):
            if ch in node.values:
                finish(ch, node.values[ch], True)
                remaining.remove(ch)
        take_incoming(node)
        parent_id = node.parent_id
    for ch in remaining:
        finish(ch)
    return out, visited


def derive_parent_history(
    child: ChainNode,
    child_hist: Mapping[str, DeltaChannelHistory],
    parent: ChainNode,
    channels: Iterable[str],
) -> dict[str, DeltaChannelHistory] | None:
    """The histories at ``parent`` from those of its child, without walking.

    ``history(child) = history(parent) + parent's writes + child's incoming``, so the
    parent's is a prefix of the child's; ``None`` when a seed sits at the child or the
    parent (then the prefix is not the parent's history).

    Args:
        child: The child checkpoint.
        child_hist: Its histories.
        parent: Its parent.
        channels: Channels wanted at the parent.

    Returns:
        The parent's histories, or ``None``.
    """
    out: dict[str, DeltaChannelHistory] = {}
    for ch in channels:
        hist = child_hist.get(ch)
        inc = child.incoming.get(ch)
        if hist is None or ch in child.values or ch in parent.values:
            return None
        if inc is not None and "seed" in inc:
            return None
        drop = len(parent.writes_for(ch)) + (len(inc["writes"]) if inc else 0)
        writes = list(hist["writes"])
        if drop > len(writes):
            return None
        out[ch] = with_seed({"writes": writes[: len(writes) - drop]}, hist)
    return out


def encode_incoming(hist: Mapping[str, DeltaChannelHistory]) -> dict[str, Any]:
    """The storable form of an incoming record (values only: task ids are not replayed).

    Args:
        hist: ``{channel: DeltaChannelHistory}``.

    Returns:
        ``{channel: {"values": [...], "seed"?: value}}``.
    """
    return {ch: with_seed({"values": [w[2] for w in h["writes"]]}, h) for ch, h in hist.items()}


def decode_incoming(data: Mapping[str, Any]) -> dict[str, DeltaChannelHistory]:
    """Inverse of :func:`encode_incoming`.

    Args:
        data: The stored record.

    Returns:
        ``{channel: DeltaChannelHistory}``.
    """
    return {
        ch: with_seed({"writes": [(INCOMING_TASK_ID, ch, v) for v in entry["values"]]}, entry)
        for ch, entry in data.items()
    }
