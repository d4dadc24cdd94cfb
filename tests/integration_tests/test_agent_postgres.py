"""create_kimi_agent on PostgresSaver (optional extra ``postgres``; skipped without it).

Needs ``pip install 'langchain-kimi-context[postgres]'`` and a PostgreSQL server; the
DSN comes from ``KIMI_TEST_POSTGRES_DSN`` (default: ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from langchain_kimi_context import AgentSettings, KimiChatModel, RetrySettings, create_kimi_agent
from langchain_kimi_context.testing import KimiEmulator

DSN = os.environ.get("KIMI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_saver() -> Iterator[Any]:
    pg = pytest.importorskip("langgraph.checkpoint.postgres")
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {DSN}: {exc}")
    schema = f"kimi_pg_{uuid.uuid4().hex[:12]}"  # other test runs share the server
    admin.execute(f'CREATE SCHEMA "{schema}"')
    conn = psycopg.connect(
        DSN, autocommit=True, prepare_threshold=0, options=f"-csearch_path={schema}"
    )
    saver = pg.PostgresSaver(conn)
    saver.setup()
    try:
        yield saver
    finally:
        conn.close()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def test_agent_runs_and_resumes_on_postgres(
    emulator: KimiEmulator, postgres_saver: Any, tmp_path: Path
) -> None:
    def read_file(path: str) -> str:
        """Read a file."""
        return f"contents of {path}"

    thread = f"pg-{uuid.uuid4()}"
    cfg = {"configurable": {"thread_id": thread}}
    settings = AgentSettings(retry=RetrySettings(initial_interval=0.001))

    def make() -> Any:
        model = KimiChatModel(base_url=emulator.base_url, api_key=emulator.api_key)
        return create_kimi_agent(model, [read_file], checkpointer=postgres_saver, settings=settings)

    agent = make()
    agent.invoke({"messages": [HumanMessage('@call read_file {"path": "a.py"}')]}, cfg)
    out = agent.invoke({"messages": [HumanMessage("@say second")]}, cfg)
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai", "human", "ai"]
    # a new agent object (a restarted process) reads the same thread back
    state = make().get_state(cfg)
    assert [m.id for m in state.values["messages"]] == [m.id for m in out["messages"]]
    assert isinstance(state.values["messages"][-1], AIMessage)
    assert state.values["reports"]["call_model"]["ok"] is True
    history = list(make().get_state_history(cfg))
    assert len(history) > 16  # every node of both turns is a checkpoint
    postgres_saver.delete_thread(thread)
