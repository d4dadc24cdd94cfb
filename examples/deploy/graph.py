"""The Kimi agent as a LangGraph server graph (``langgraph.json`` -> ``agent``).

Configuration comes from the environment: ``MOONSHOT_API_KEY``, ``MOONSHOT_BASE_URL``
(optional) and ``KIMI_MODEL`` (default ``kimi-k2.6``). Persistence is the server's:
the graph is built with ``checkpointer=False`` and the server attaches its own
checkpointer (in-memory under ``langgraph dev``, Postgres in production) and store.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_kimi_context import KimiChatModel, create_kimi_agent


def make_graph() -> Any:
    """Build the agent from the environment (called once by the server)."""
    kwargs: dict[str, Any] = {"model": os.environ.get("KIMI_MODEL", "kimi-k2.6")}
    if os.environ.get("MOONSHOT_BASE_URL"):
        kwargs["base_url"] = os.environ["MOONSHOT_BASE_URL"]
    return create_kimi_agent(KimiChatModel(**kwargs), checkpointer=False)


agent = make_graph()
