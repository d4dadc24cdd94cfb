"""The async API of a sync checkpoint saver: each call runs in a worker thread.

LangGraph calls ``aget_tuple``, ``aput``, ... when a graph runs with ``ainvoke`` or
``astream``; a saver whose storage is synchronous (SQLite, or Postgres calls that have no
async counterpart) answers them by running its sync method in ``asyncio.to_thread``.
The saver serialises access to its connection itself (a lock or a pool). A saver with
a native async path for some calls overrides just those.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
    DeltaChannelHistory,
)

__all__ = ["ThreadedAsyncMixin"]


class ThreadedAsyncMixin:
    """Async twins of a saver's sync methods, each run in a worker thread.

    List it before the LangGraph saver class. The twins take the arguments of the
    sync methods (``BaseCheckpointSaver``'s signatures). Covers the base API (``aget_tuple``,
    ``alist``, ``aput``, ``aput_writes``, ``adelete_thread``) and the extended one
    (``acopy_thread``, ``adelete_for_runs``, ``aprune``, ``aget_delta_channel_history``).
    """

    get_tuple: Callable[[RunnableConfig], CheckpointTuple | None]
    list: Callable[..., Iterator[CheckpointTuple]]
    put: Callable[..., RunnableConfig]
    put_writes: Callable[..., None]
    delete_thread: Callable[[str], None]
    copy_thread: Callable[[str, str], None]
    delete_for_runs: Callable[[Sequence[str]], None]
    prune: Callable[..., None]
    get_delta_channel_history: Callable[..., Mapping[str, DeltaChannelHistory]]

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async ``get_tuple``, run in a worker thread."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, *args: Any, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        """Async ``list``, run in a worker thread (the whole page is read, then yielded)."""
        items = await asyncio.to_thread(lambda: list(self.list(*args, **kwargs)))
        for item in items:
            yield item

    async def aput(self, *args: Any, **kwargs: Any) -> RunnableConfig:
        """Async ``put``, run in a worker thread."""
        return await asyncio.to_thread(self.put, *args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        """Async ``put_writes``, run in a worker thread."""
        await asyncio.to_thread(self.put_writes, *args, **kwargs)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async ``delete_thread``, run in a worker thread."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async ``copy_thread``, run in a worker thread."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async ``delete_for_runs``, run in a worker thread."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_turns") -> None:
        """Async ``prune``, run in a worker thread."""
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async ``get_delta_channel_history``, run in a worker thread."""
        return await asyncio.to_thread(
            lambda: self.get_delta_channel_history(config=config, channels=channels)
        )
