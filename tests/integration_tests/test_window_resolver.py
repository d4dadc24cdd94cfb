"""One window resolver for every face: a window learned at run time applies at once.

The emulator serves a model with a 20,000-token window the package does not know; the
first overflow error names it. An agent and a memory built BEFORE that use it from
their next call on, without being rebuilt.
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.testing import KimiEmulator
from tests.integration_tests.test_overflow_emulator import SMALL, WINDOW, small_emulator

__all__ = ["small_emulator"]  # the fixture: a 20,000-token model the package does not know


def _history(turns: int) -> list[BaseMessage]:
    log: list[BaseMessage] = []
    for i in range(turns):
        log.append(HumanMessage(f"Turn {i}: TODO item {i}. " + "details " * 400, id=f"h{i}"))
        log.append(AIMessage(f"Answer {i}: " + "words " * 400, id=f"a{i}"))
    return log


def test_a_learned_window_applies_at_once_in_every_face(
    small_emulator: KimiEmulator, tmp_path: Path
) -> None:
    emu = small_emulator
    model = KimiChatModel(model=SMALL, base_url=emu.base_url, api_key=emu.api_key)
    settings = AgentSettings(retry=RetrySettings(initial_interval=0.001))
    agent = create_kimi_agent(model, db_path=tmp_path / "a.sqlite", settings=settings)
    memory = RollingSnapshotMemory(
        KimiChatModel(model=SMALL, base_url=emu.base_url, api_key=emu.api_key),
        db_path=tmp_path / "m.sqlite",
        settings=settings,
    )
    sid = memory.create_session()
    before = memory.usage(sid).context_window
    assert before > WINDOW  # nothing learned yet: the package assumes a default

    cfg = {"configurable": {"thread_id": "learn"}}
    msgs = [*_history(30), HumanMessage("@say recovered")]
    events = list(agent.stream({"messages": msgs}, cfg, stream_mode="custom"))
    learned = [e for e in events if e["event"] == "window_learned"]
    assert learned == [{"event": "window_learned", "model": SMALL, "window": WINDOW}]
    assert agent.get_state(cfg).values["messages"][-1].content == "recovered"

    # the same agent and the memory built before now use the learned window
    assert agent.get_state(cfg).values["context"]["window"] == WINDOW
    assert memory.usage(sid).context_window == WINDOW
    emu.reset()
    agent.invoke({"messages": [HumanMessage("@say again")]}, cfg)
    assert 400 not in [r.status for r in emu.chat_requests]
