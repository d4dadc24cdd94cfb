"""Clean streams and visible progress.

``stream_mode="messages"`` shows the user's answer tokens (and tool results), never a
compaction summary (summariser calls are tagged ``nostream``; the prepared view with its
summary messages is not a node output). ``stream_mode="custom"`` carries the package's
progress events in order; the same facts are ``logging`` lines.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_kimi_context import ContextPolicy, KimiChatModel
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.testing import KimiEmulator

SMALL = ContextPolicy(
    context_window=32_000,
    compact_trigger_tokens=6_000,
    compact_trigger_ratio=None,
    compact_reserve_tokens=None,
    compact_target_share=0.1,
)
SUMMARY_MARKS = ("Previous context has been compacted", "## Summary", "## Current Task")


def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"


def _turn(i: int) -> str:
    return f"Step {i}: refactor module_{i}.py. TODO: add tests for module_{i}.\n@reply 900"


def _agent(emu: KimiEmulator, tmp_path: Path) -> Any:
    model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
    return create_kimi_agent(
        model,
        [read_file],
        policy=SMALL,
        db_path=tmp_path / "s.sqlite",
        settings=AgentSettings(retry=RetrySettings(initial_interval=0.001)),
    )


def test_messages_stream_has_no_summary_across_several_compactions(
    emulator: KimiEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = {"configurable": {"thread_id": "stream"}}
    streamed: list[tuple[str, str]] = []  # (node, text)
    events: list[dict[str, Any]] = []
    caplog.set_level(logging.INFO, logger="langchain_kimi_context")
    for i in range(14):
        text = _turn(i) if i % 3 else f'@call read_file {{"path": "m{i}.py"}}\n' + _turn(i)
        for mode, chunk in agent.stream(
            {"messages": [HumanMessage(text)]}, cfg, stream_mode=["messages", "custom"]
        ):
            if mode == "messages":
                message, meta = chunk
                streamed.append((meta["langgraph_node"], str(message.content)))
            else:
                events.append(chunk)
    state = agent.get_state(cfg).values
    assert len(state["compactions"]) >= 2, "the session must compact several times"
    summaries = [r for r in state["compactions"] if r.get("summary")]
    assert summaries, "at least one compaction called the summariser"
    # no summary text, no summariser output, in the user's token stream
    joined = "".join(text for _, text in streamed)
    for mark in SUMMARY_MARKS:
        assert mark not in joined
    assert {node for node, _ in streamed} <= {"call_model", "tools"}
    assert any(node == "call_model" and text for node, text in streamed)  # answers did

    # custom events: every compaction start is followed by its end, in order
    kinds = [e["event"] for e in events]
    assert kinds.count("compaction_start") == kinds.count("compaction_end") >= 2
    open_ = 0
    for kind in kinds:
        if kind == "compaction_start":
            assert open_ == 0
            open_ = 1
        elif kind == "compaction_end":
            assert open_ == 1
            open_ = 0
    ends = [e for e in events if e["event"] == "compaction_end" and e.get("applied")]
    assert all(e["tokens_after"] < e["tokens_before"] for e in ends)
    assert any(e["event"] == "snapshot" for e in events)
    # the same facts are INFO log lines with the numbers
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("compaction" in line and "->" in line and "tokens" in line for line in lines)


def test_retry_and_window_learned_events(emulator: KimiEmulator, tmp_path: Path) -> None:
    agent = _agent(emulator, tmp_path)
    cfg = {"configurable": {"thread_id": "events"}}
    events = [
        chunk
        for chunk in agent.stream(
            {"messages": [HumanMessage("@fail server_error\n@say fine")]}, cfg, stream_mode="custom"
        )
    ]
    retry = [e for e in events if e["event"] == "retry"]
    assert retry
    assert retry[0]["attempt"] == 1
    assert retry[0]["error_type"] == "KimiServerError"


def test_middleware_stream_has_no_summary_and_keeps_every_record(emulator: KimiEmulator) -> None:
    """create_agent + KimiContextMiddleware: summaries never stream; records accumulate."""
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    from langchain_kimi_context import KimiContextMiddleware

    model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    agent = create_agent(
        model, middleware=[KimiContextMiddleware(policy=SMALL)], checkpointer=InMemorySaver()
    )
    cfg = {"configurable": {"thread_id": "mw-stream"}}
    streamed: list[str] = []
    for i in range(14):
        msg = HumanMessage(_turn(i))
        for token, _meta in agent.stream({"messages": [msg]}, cfg, stream_mode="messages"):
            streamed.append(str(token.content))
    records = agent.get_state(cfg).values["kimi_compactions"]
    assert len(records) >= 2, "several compactions, each record kept (not overwritten)"
    assert len({r["record_id"] for r in records}) == len(records)
    joined = "".join(streamed)
    for mark in SUMMARY_MARKS:
        assert mark not in joined
    assert "Step 13" not in joined  # user turns are not echoed either
