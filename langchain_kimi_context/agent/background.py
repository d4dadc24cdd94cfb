"""The package's background event loop: one loop in a daemon thread, started on first use.

Sync callers need somewhere to run coroutines that must not run on a loop of their own:
async-only tools under ``invoke`` (see :mod:`~langchain_kimi_context.agent.tools`), and
MCP client sessions, which are anyio task groups that must be entered, used and closed on
one loop (see :mod:`~langchain_kimi_context.mcp`). Both use this one loop, so an MCP tool
called from a sync agent runs on the same loop that owns its session.

The loop is created lazily, once per process (again only if it was closed), and runs
until the process exits (its thread is a daemon).
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["background_loop"]

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """Return the package's background event loop, starting it on first use.

    Returns:
        The running loop (schedule work on it with ``asyncio.run_coroutine_threadsafe``).
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="kimi-tool-loop", daemon=True).start()
            _loop = loop
        return _loop
