"""A caller in its own process: M turns on one agent thread and one memory session.

Run by ``test_concurrency.py`` as ``python -m tests.integration_tests._concurrency_worker
STORE BASE_URL API_KEY THREAD SESSION CALLER TURNS STRATEGY``; prints one JSON line per
turn and face (``{"face": ..., "tag": ..., "ok": bool, "error": ...}``).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def open_store(store: str) -> Any:
    """A checkpointer for ``sqlite:PATH`` or a Postgres DSN."""
    if store.startswith("sqlite:"):
        from langchain_kimi_context.agent.storage import open_sqlite_checkpointer

        return open_sqlite_checkpointer(store.removeprefix("sqlite:"))
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    conn = psycopg.connect(store, autocommit=True, prepare_threshold=0)
    return PostgresSaver(conn)


def main(argv: list[str]) -> None:
    """Run the turns and report each one."""
    from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
    from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
    from langchain_kimi_context.errors import ThreadBusyError

    store, base_url, api_key, thread, session, caller, turns, strategy = argv
    saver = open_store(store)
    model = KimiChatModel(model="kimi-k2.6", base_url=base_url, api_key=api_key)
    settings = AgentSettings(
        retry=RetrySettings(initial_interval=0.001),
        multitask_strategy=strategy,  # type: ignore[arg-type]
        busy_timeout_s=60,
    )
    agent = create_kimi_agent(model, checkpointer=saver, settings=settings)
    memory = RollingSnapshotMemory(model, checkpointer=saver, settings=settings)
    for j in range(int(turns)):
        tag = f"{caller}-{j}"
        text = f"@fail slow 0.02\n@say r {tag}"
        for face in ("agent", "memory"):
            try:
                if face == "agent":
                    config = {"configurable": {"thread_id": thread}}
                    agent.invoke({"messages": [("user", text)]}, config)
                else:
                    memory.chat(session, text)
                print(json.dumps({"face": face, "tag": tag, "ok": True}), flush=True)
            except ThreadBusyError as exc:
                print(json.dumps({"face": face, "tag": tag, "ok": False, "error": str(exc)}))


if __name__ == "__main__":
    main(sys.argv[1:])
