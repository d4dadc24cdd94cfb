"""One behavioural suite for the agent on SQLite and on PostgreSQL.

PostgreSQL comes from the shared fixtures (``tests/postgres_fixtures.py``): each test works
in a fresh schema of the run's own database, and the Postgres cases skip when the server
is unreachable.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_kimi_context import AgentSettings, KimiChatModel, RetrySettings, create_kimi_agent
from langchain_kimi_context.testing import KimiEmulator


@pytest.fixture(params=["sqlite", "postgres"])
def checkpointer(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_schema"))
    return str(tmp_path / "agent.sqlite")


def _agent(emu: KimiEmulator, checkpointer: Any) -> Any:
    def read_file(path: str) -> str:
        """Read a file."""
        return f"contents of {path}"

    model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
    settings = AgentSettings(retry=RetrySettings(initial_interval=0.001))
    return create_kimi_agent(model, [read_file], checkpointer=checkpointer, settings=settings)


def test_runs_resumes_and_reads_history(emulator: KimiEmulator, checkpointer: str) -> None:
    cfg = {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}}
    agent = _agent(emulator, checkpointer)
    agent.invoke({"messages": [HumanMessage('@call read_file {"path": "a.py"}')]}, cfg)
    out = agent.invoke({"messages": [HumanMessage("@say second")]}, cfg)
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai", "human", "ai"]
    # another agent object (a restarted process) reads the same thread back
    again = _agent(emulator, checkpointer)
    state = again.get_state(cfg)
    assert [m.id for m in state.values["messages"]] == [m.id for m in out["messages"]]
    assert state.values["reports"]["call_model"]["ok"] is True
    history = list(again.get_state_history(cfg))
    # the last turn keeps every node checkpoint, each finished turn one (its last)
    last_input = next(i for i, s in enumerate(history) if s.metadata["source"] == "input")
    assert last_input >= 9
    assert len(history) - (last_input + 1) == 1
    # time travel: the state after the first turn is still addressable and exact
    first = next(s for s in history if len(s.values.get("messages", [])) == 4 and not s.next)
    assert first.values["messages"][-1].content == out["messages"][3].content


def test_ainvoke_and_rollback_by_checkpoint_id(emulator: KimiEmulator, checkpointer: str) -> None:
    cfg = {"configurable": {"thread_id": f"a-{uuid.uuid4()}"}}
    agent = _agent(emulator, checkpointer)

    async def turns() -> Any:
        await agent.ainvoke({"messages": [HumanMessage("@say one")]}, cfg)
        return await agent.ainvoke({"messages": [HumanMessage("@say two")]}, cfg)

    out = asyncio.run(turns())
    assert [m.content for m in out["messages"]] == ["@say one", "one", "@say two", "two"]
    after_first = next(
        s for s in agent.get_state_history(cfg) if len(s.values.get("messages", [])) == 2
    )
    # continue from the first turn's checkpoint: a fork, the second turn is not in it
    fork = agent.invoke({"messages": [HumanMessage("@say again")]}, after_first.config)
    assert [m.content for m in fork["messages"]] == ["@say one", "one", "@say again", "again"]
    latest = agent.get_state(cfg).values["messages"]
    assert [m.content for m in latest][-2:] == ["@say again", "again"]


def test_rolling_snapshot_memory_snapshot_rollback_share(
    emulator: KimiEmulator, checkpointer: str
) -> None:
    from langchain_kimi_context import RollingSnapshotMemory
    from langchain_kimi_context.agent.checkpointer import resolve_checkpointer

    model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    saver = resolve_checkpointer(checkpointer)
    assert saver is not None
    mem = RollingSnapshotMemory(model, checkpointer=saver, namespace=f"ns-{uuid.uuid4().hex[:6]}")
    sid = mem.create_session()
    mem.chat(sid, "@say first")
    snap = mem.snapshot(sid, name="after-first")
    mem.chat(sid, "@say second")
    assert [m.content for m in mem.messages(sid)][-2:] == ["@say second", "second"]
    copy = mem.share(snap)
    mem.rollback(sid, snap)
    assert [m.content for m in mem.messages(sid)] == ["@say first", "first"]
    assert [m.content for m in mem.messages(copy)] == ["@say first", "first"]


def test_cache_registry_in_a_postgres_store(postgres_schema: str) -> None:
    from langchain_kimi_context.agent.checkpointer import open_postgres_store
    from langchain_kimi_context.caching import CacheEntry, StoreCacheRegistry

    store, other = open_postgres_store(postgres_schema), open_postgres_store(postgres_schema)
    registry = StoreCacheRegistry(store)
    assert registry.get("missing") is None
    entry = CacheEntry(
        cache_id="cache-1",
        fingerprint="f",
        session_id="s",
        family="moonshot-v1",
        prefix_messages=3,
        tokens=1200,
        created_at=1.0,
        expires_at=3601.0,
        verified_at=1.0,
    )
    registry.put("k", entry)
    # another process (a second store on the same database) sees the same entry
    assert StoreCacheRegistry(other).get("k") == entry
    registry.delete("k")
    assert registry.get("k") is None
    store.conn.close()
    other.conn.close()


def test_a_keyword_value_dsn_is_postgres_not_a_sqlite_file(
    emulator: KimiEmulator, postgres_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    # libpq's keyword/value form of the same connection ("host=... dbname=... options=...")
    dsn = make_conninfo(**{k: str(v) for k, v in conninfo_to_dict(postgres_schema).items()})
    assert "://" not in dsn
    monkeypatch.chdir(tmp_path)
    cfg = {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}}
    out = _agent(emulator, dsn).invoke({"messages": [HumanMessage("@say hello")]}, cfg)
    assert out["messages"][-1].content
    assert list(tmp_path.iterdir()) == [], "no SQLite file named after the DSN"
    assert [m.id for m in _agent(emulator, postgres_schema).get_state(cfg).values["messages"]] == [
        m.id for m in out["messages"]
    ]
