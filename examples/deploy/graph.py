"""The Kimi agent as a LangGraph server graph (``langgraph.json`` -> ``agent``).

Configuration comes from the environment: ``MOONSHOT_API_KEY``, ``MOONSHOT_BASE_URL``
(optional) and ``KIMI_MODEL`` (default ``kimi-k2.6``). Persistence is the server's: the
graph is built with ``checkpointer=False`` and the server attaches its own checkpointer
(in memory under ``langgraph dev``, Postgres in production); the model's cache registry
(explicit context caches, shared by every worker) lives in the server's ``BaseStore``,
which the server hands to :func:`make_graph`.
"""

from __future__ import annotations

import os
from typing import Any

from langgraph.store.base import BaseStore
from langgraph_sdk.runtime import ServerRuntime

from langchain_kimi_context import KimiChatModel, create_kimi_agent
from langchain_kimi_context.caching import StoreCacheRegistry


def build_model(store: BaseStore | None = None) -> KimiChatModel:
    """The chat model from the environment; ``store`` holds its cache registry."""
    kwargs: dict[str, Any] = {"model": os.environ.get("KIMI_MODEL", "kimi-k2.6")}
    if os.environ.get("MOONSHOT_BASE_URL"):
        kwargs["base_url"] = os.environ["MOONSHOT_BASE_URL"]
    if store is not None:
        kwargs["cache_registry"] = StoreCacheRegistry(store)
    return KimiChatModel(**kwargs)


def build_agent(store: BaseStore | None = None) -> Any:
    """The agent, persisted by whoever runs it (the server's checkpointer)."""
    return create_kimi_agent(build_model(store), checkpointer=False)


async def make_graph(runtime: ServerRuntime) -> Any:
    """The server's graph factory: the agent wired to the server's store."""
    return build_agent(store=runtime.store)
