"""The agent's persistence: where each storage concept lives, and the run hooks.

A session's checkpoints grow linearly with it: the ``messages`` key and the small keys
of the state are delta channels (:mod:`~langchain_kimi_context.agent.channels`: a
checkpoint stores only a step's writes), blobs are compressed
(:mod:`~langchain_kimi_context.agent.codec`), and after each run the node checkpoints
of finished turns are squashed (:mod:`~langchain_kimi_context.agent.turn_pruning`, in
SQL by :mod:`~langchain_kimi_context.agent.sql_storage`, on the default SQLite saver of
:mod:`~langchain_kimi_context.agent.sqlite_saver` or the Postgres one of
:mod:`~langchain_kimi_context.agent.postgres_saver`). This module re-exports their public
names (their import path since the first release) and holds the hooks the agent runs
when a run ends: :func:`prune_after_run` and the stream wrappers around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig

from langchain_kimi_context.agent.channels import (
    DEFAULT_SNAPSHOT_FREQUENCY,
    append_items,
    delta_channel,
    fold_messages,
    last_value,
    merge_dicts,
    messages_channel,
    records_channel,
)
from langchain_kimi_context.agent.codec import ZlibCodec
from langchain_kimi_context.agent.sqlite_saver import (
    DB_ENV_VAR,
    KimiSqliteSaver,
    default_checkpoint_path,
    open_sqlite_checkpointer,
)
from langchain_kimi_context.agent.turn_pruning import PRUNE_STRATEGIES

__all__ = [
    "DB_ENV_VAR",
    "DEFAULT_SNAPSHOT_FREQUENCY",
    "PRUNE_STRATEGIES",
    "KimiSqliteSaver",
    "ZlibCodec",
    "append_items",
    "apruned_stream",
    "default_checkpoint_path",
    "delta_channel",
    "fold_messages",
    "last_value",
    "merge_dicts",
    "messages_channel",
    "open_sqlite_checkpointer",
    "prune_after_run",
    "pruned_stream",
    "records_channel",
]


def prune_after_run(saver: object, config: RunnableConfig) -> None:
    """Squash the finished turns of the run's thread on a saver that prunes turns.

    Called by the agent when a run ends: on a saver with ``prune_turns=True``
    (:class:`~langchain_kimi_context.agent.sqlite_saver.KimiSqliteSaver`, the Postgres
    checkpointer of ``checkpointer="postgresql://"``) every turn before the latest keeps
    one checkpoint (see
    :meth:`~langchain_kimi_context.agent.turn_pruning.TurnPruningMixin.prune`); any
    other saver is left alone.

    Args:
        saver: The graph's checkpointer (anything).
        config: The run's config (its ``thread_id`` is pruned).
    """
    if not getattr(saver, "prune_turns", False):
        return
    thread_id = (config.get("configurable") or {}).get("thread_id")
    if thread_id is not None:
        saver.prune([str(thread_id)], strategy="keep_turns")  # type: ignore[attr-defined]


def pruned_stream(stream: Iterator[Any], saver: object, config: RunnableConfig) -> Iterator[Any]:
    """Yield from a run's stream, then :func:`prune_after_run` (when it completed).

    Args:
        stream: The graph's stream.
        saver: The graph's checkpointer.
        config: The run's config.

    Yields:
        The stream's items.
    """
    yield from stream
    prune_after_run(saver, config)


async def apruned_stream(
    stream: AsyncIterator[Any], saver: object, config: RunnableConfig
) -> AsyncIterator[Any]:
    """Async :func:`pruned_stream` (the pruning runs in a worker thread).

    Args:
        stream: The graph's async stream.
        saver: The graph's checkpointer.
        config: The run's config.

    Yields:
        The stream's items.
    """
    async for item in stream:
        yield item
    await asyncio.to_thread(prune_after_run, saver, config)
