"""Async-only tools (``@tool async def``, what MCP adapters produce) in every face.

They run under ``invoke`` (on a loop the package manages) and ``ainvoke`` (on the
caller's loop), with the same timeouts, error capture and repeat counting as sync tools.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool, tool

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.agent.tools import ToolRunner
from langchain_kimi_context.testing import KimiEmulator

FAST = RetrySettings(initial_interval=0.001, max_interval=0.01, max_retry_after=0.01)
LOOPS: list[int] = []


@tool
async def lookup(key: str) -> str:
    """Look a key up in the async store."""
    await asyncio.sleep(0.01)
    LOOPS.append(id(asyncio.get_running_loop()))
    return f"value of {key}"


@tool
async def hang(seconds: float) -> str:
    """Wait for a while (async)."""
    await asyncio.sleep(seconds)
    return "finished"


@tool
async def broken(key: str) -> str:
    """Fail on purpose (async)."""
    raise RuntimeError(f"store offline for {key}")


def _agent(emu: KimiEmulator, tmp_path: Path, **kw: Any) -> Any:
    model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
    settings = AgentSettings(retry=FAST, tool_timeouts={"hang": 0.3})
    return create_kimi_agent(
        model, [lookup, hang, broken], db_path=tmp_path / "a.sqlite", settings=settings, **kw
    )


def _script() -> HumanMessage:
    return HumanMessage(
        '@call lookup {"key": "a"}\n@call hang {"seconds": 5}\n@call broken {"key": "b"}\n@say done'
    )


def _check_turn(messages: list[Any]) -> None:
    results = {m.name: m for m in messages if isinstance(m, ToolMessage)}
    assert results["lookup"].content == "value of a"
    assert results["lookup"].status == "success"
    assert results["hang"].status == "error"
    assert "timed out after 0.3 s" in results["hang"].text
    assert results["broken"].status == "error"
    assert "RuntimeError: store offline for b" in results["broken"].text
    assert "does not support sync invocation" not in str([m.content for m in messages])
    assert isinstance(messages[-1], AIMessage)
    assert messages[-1].content == "done"


def test_async_only_tools_under_invoke(emulator: KimiEmulator, tmp_path: Path) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = {"configurable": {"thread_id": "sync"}}
    out = agent.invoke({"messages": [_script()]}, cfg)
    _check_turn(out["messages"])
    report = agent.get_state(cfg).values["reports"]["tools"]
    assert report["timeouts"]
    assert set(report["errors"].values()) == {"timeout", "RuntimeError"}


async def test_async_only_tools_under_ainvoke_run_on_the_callers_loop(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = {"configurable": {"thread_id": "async"}}
    LOOPS.clear()
    out = await agent.ainvoke({"messages": [_script()]}, cfg)
    _check_turn(out["messages"])
    assert [id(asyncio.get_running_loop())] == LOOPS  # MCP sessions live on this loop


def test_sync_tools_still_time_out_under_ainvoke(emulator: KimiEmulator, tmp_path: Path) -> None:
    release = threading.Event()

    def slow_sync(n: int) -> str:
        """Block for a while (sync)."""
        release.wait(5)
        return "late"

    model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    agent = create_kimi_agent(
        model,
        [slow_sync],
        db_path=tmp_path / "s.sqlite",
        settings=AgentSettings(retry=FAST, tool_timeout_s=0.2),
    )
    cfg = {"configurable": {"thread_id": "s"}}
    msg = HumanMessage('@call slow_sync {"n": 1}\n@say ok')
    out = asyncio.run(agent.ainvoke({"messages": [msg]}, cfg))
    release.set()
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert tool_msg.status == "error"
    assert "timed out after 0.2 s" in tool_msg.text


def test_repeat_counter_applies_to_async_tools() -> None:
    runner = ToolRunner([lookup], warn_at=2, stop_at=3)
    call = {"name": "lookup", "args": {"key": "k"}, "id": "c1"}
    log: list[Any] = [HumanMessage("go")]
    contents = []
    for i in range(3):
        ai = AIMessage("", tool_calls=[{**call, "id": f"c{i}"}])
        log.append(ai)
        results, report = asyncio.run(runner.arun(ai, log))
        log.extend(results)
        contents.append((results[0].status, report.stopped is not None))
    assert contents[0] == ("success", False)
    assert "[warning: identical call repeated 2 times" in log[-3].text
    assert contents[2] == ("error", True)
    # the sync path counts the same way
    results, report = runner.run(AIMessage("", tool_calls=[{**call, "id": "c9"}]), log)
    assert report.stopped
    assert results[0].status == "error"


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_memory_runs_async_only_tools(emulator: KimiEmulator, tmp_path: Path, mode: str) -> None:
    model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    memory = RollingSnapshotMemory(
        model, tools=[lookup], db_path=tmp_path / "m.sqlite", settings=AgentSettings(retry=FAST)
    )
    sid = memory.create_session()
    text = '@call lookup {"key": "z"}\n@say got it'
    reply = memory.chat(sid, text) if mode == "chat" else asyncio.run(memory.achat(sid, text))
    assert reply.content == "got it"
    tool_msg = next(m for m in memory.log(sid) if isinstance(m, ToolMessage))
    assert tool_msg.content == "value of z"
    assert tool_msg.status == "success"


def test_a_tool_without_any_implementation_is_a_build_time_error() -> None:
    from langchain_kimi_context.errors import KimiConfigurationError

    bare = StructuredTool(name="bare", description="nothing", args_schema={"type": "object"})
    with pytest.raises(KimiConfigurationError, match="bare"):
        ToolRunner([bare])
