"""Hand MCP work to the package's background event loop, from sync or async callers.

MCP client sessions are anyio task groups: they must be entered, used and closed on one
event loop. Agents are called from sync code (``invoke``, worker threads) and from
whatever loop the application runs (``ainvoke``), so every MCP session lives on the
package's background loop (:mod:`~langchain_kimi_context.agent.background`, the one
async-only tools run on under ``invoke``) and every MCP call is handed to it:

* :func:`run_sync` blocks the calling thread until the coroutine finishes there;
* :func:`run_async` awaits it from any other loop without blocking that loop.

Code already running on the background loop awaits directly (no hand-over, no deadlock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from langchain_kimi_context.agent.background import background_loop

__all__ = ["mcp_loop", "on_mcp_loop", "run_async", "run_sync"]

T = TypeVar("T")


def mcp_loop() -> asyncio.AbstractEventLoop:
    """The loop that owns MCP sessions (the package's background loop).

    Returns:
        The running loop.
    """
    return background_loop()


def on_mcp_loop() -> bool:
    """Whether the caller runs on the MCP loop.

    Returns:
        ``True`` inside a coroutine scheduled there.
    """
    try:
        return asyncio.get_running_loop() is mcp_loop()
    except RuntimeError:
        return False


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the MCP loop and block until it returns.

    Args:
        coro: The coroutine (its own timeouts bound the wait).

    Returns:
        Its result (its exception is raised here).

    Raises:
        RuntimeError: Called from the MCP loop itself (that would deadlock).
    """
    if on_mcp_loop():
        coro.close()
        raise RuntimeError("run_sync called on the MCP loop; await the coroutine instead")
    return asyncio.run_coroutine_threadsafe(coro, mcp_loop()).result()


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the MCP loop from any loop.

    Cancelling the caller cancels the coroutine on the MCP loop too.

    Args:
        coro: The coroutine.

    Returns:
        Its result.
    """
    if on_mcp_loop():
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, mcp_loop()))
