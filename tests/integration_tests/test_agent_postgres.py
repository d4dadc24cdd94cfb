"""create_kimi_agent on PostgresSaver (optional extra ``postgres``; skipped without it).

Needs ``pip install 'langchain-kimi-context[postgres]'`` and a PostgreSQL server (the
shared fixtures of ``tests/postgres_fixtures.py``: a fresh schema of the run's database).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from langchain_kimi_context import AgentSettings, KimiChatModel, RetrySettings, create_kimi_agent
from langchain_kimi_context.testing import KimiEmulator


@pytest.fixture
def postgres_saver(postgres_schema: str) -> Iterator[Any]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(postgres_schema, autocommit=True, prepare_threshold=0) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        yield saver


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
