"""Recall on every face, over real HTTP to the emulator.

* ``create_kimi_agent(compact_context_tool=True)``: the model asks for a compaction;
  a small context refuses it, a large one compacts before the next step.
* ``KimiContextMiddleware(recall=True)`` with ``langchain.agents.create_agent``: the
  tools read the agent's own ``messages`` through LangChain's ``ToolNode``.
* ``RollingSnapshotMemory(recall=True)``: a session reads back its compacted history.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from langchain_kimi_context import ContextPolicy, KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.middleware import KimiContextMiddleware
from langchain_kimi_context.testing import KimiEmulator

FAST = RetrySettings(initial_interval=0.001, max_interval=0.01, max_retry_after=0.01)


def dump_logs(service: str) -> str:
    """Dump the logs of a service."""
    return (
        f"logs of {service}\n"
        + "\n".join(f"{service} event {i}: request served in {i % 17} ms" for i in range(250))
        + f"\ncheckpoint: {service} holds lease token LEASE-{len(service) * 1111}"
    )


def _model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)


def _tool_results(messages: list[Any], name: str) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage) and m.name == name]


def test_compact_context_tool_compacts_only_a_large_context(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    policy = ContextPolicy(
        context_window=32_000,
        reserved_output_tokens=2_000,
        compact_trigger_ratio=None,
        compact_reserve_tokens=None,
        clear_tool_results_keep=1,
    )
    agent = create_kimi_agent(
        _model(emulator),
        [dump_logs],
        policy=policy,
        db_path=tmp_path / "c.sqlite",
        settings=AgentSettings(retry=FAST),
        sleep=lambda s: None,
        compact_context_tool=True,
    )
    cfg = {"configurable": {"thread_id": "c"}}
    out = agent.invoke({"messages": [HumanMessage("@call compact_context\n@say ok")]}, cfg)
    refused = _tool_results(out["messages"], "compact_context")[-1]
    assert refused.content.startswith("Not compacted: the context is already small")
    assert not agent.get_state(cfg).values.get("compactions")
    for service in ("api", "db", "queue", "cache", "auth", "billing", "search"):
        agent.invoke(
            {"messages": [HumanMessage(f'@call dump_logs {{"service": "{service}"}}\n@say ok')]},
            cfg,
        )
    assert not agent.get_state(cfg).values.get("compactions")  # the trigger is off
    out = agent.invoke({"messages": [HumanMessage("@call compact_context\n@say ok")]}, cfg)
    accepted = _tool_results(out["messages"], "compact_context")[-1]
    assert accepted.content.startswith("Compaction requested")
    records = agent.get_state(cfg).values["compactions"]
    assert [r["trigger"] for r in records] == ["requested"]
    assert records[0]["tokens_after"] < records[0]["tokens_before"]
    # the request is honoured once: the next step does not compact again
    report = agent.get_state(cfg).values["reports"]["compact"]
    assert report["phase"] == "end_of_turn"


def test_middleware_recall_reads_the_agent_history_through_toolnode(
    emulator: KimiEmulator,
) -> None:
    agent = create_agent(
        _model(emulator),
        tools=[dump_logs],
        middleware=[KimiContextMiddleware(recall=True)],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "mw"}}
    agent.invoke({"messages": [HumanMessage('@call dump_logs {"service": "db"}\n@say ok')]}, cfg)
    out = agent.invoke(
        {"messages": [HumanMessage('@call search_history {"query": "lease token"}\n@say ok')]},
        cfg,
    )
    found = _tool_results(out["messages"], "search_history")[-1].content
    logs = _tool_results(out["messages"], "dump_logs")[0]
    assert logs.id in {r.split("#")[0] for r in re.findall(r"ref='([^']+)'", str(found))}
    read = f'@call read_history {{"ref": "{logs.id}", "length": 20000}}\n@say ok'
    out = agent.invoke({"messages": [HumanMessage(read)]}, cfg)
    page = _tool_results(out["messages"], "read_history")[-1].content
    assert str(page).partition("\n")[2] == logs.content
    other = agent.invoke(
        {"messages": [HumanMessage(f'@call read_history {{"ref": "{logs.id}"}}\n@say ok')]},
        {"configurable": {"thread_id": "mw-other"}},
    )
    assert str(_tool_results(other["messages"], "read_history")[-1].content).startswith(
        "Not found:"
    )


def test_memory_session_recalls_what_compress_took_out_of_view(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    memory = RollingSnapshotMemory(
        _model(emulator),
        tools=[dump_logs],
        db_path=tmp_path / "m.sqlite",
        settings=AgentSettings(retry=FAST),
        sleep=lambda s: None,
        recall=True,
    )
    sid = memory.create_session(system="You are an on-call assistant.")
    for service in ("api", "db", "queue", "cache"):
        memory.chat(sid, f'@call dump_logs {{"service": "{service}"}}\n@say ok')
    memory.compress(sid)
    view = " ".join(str(m.content) for m in memory.messages(sid))
    assert "LEASE-2222" not in view  # the db logs left the view
    memory.chat(sid, '@call search_history {"query": "LEASE-2222"}\n@say ok')
    log = memory.log(sid)
    found = str(_tool_results(log, "search_history")[-1].content)
    db_logs = next(m for m in _tool_results(log, "dump_logs") if "LEASE-2222" in str(m.content))
    assert db_logs.id in {r.split("#")[0] for r in re.findall(r"ref='([^']+)'", found)}


async def test_recall_tools_run_on_the_ainvoke_path(emulator: KimiEmulator, tmp_path: Path) -> None:
    agent = create_kimi_agent(
        _model(emulator),
        [dump_logs],
        db_path=tmp_path / "a.sqlite",
        settings=AgentSettings(retry=FAST),
        recall=True,
    )
    cfg = {"configurable": {"thread_id": "async"}}
    await agent.ainvoke(
        {"messages": [HumanMessage('@call dump_logs {"service": "queue"}\n@say ok')]}, cfg
    )
    out = await agent.ainvoke(
        {"messages": [HumanMessage('@call search_history {"query": "LEASE-5555"}\n@say ok')]},
        cfg,
    )
    logs = _tool_results(out["messages"], "dump_logs")[0]
    found = str(_tool_results(out["messages"], "search_history")[-1].content)
    assert logs.id in {r.split("#")[0] for r in re.findall(r"ref='([^']+)'", found)}
