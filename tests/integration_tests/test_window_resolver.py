"""One window resolver for every face: a window learned at run time applies at once.

The emulator serves a model with a 20,000-token window the package does not know; the
first overflow error names it. An agent and a memory built BEFORE that use it from
their next call on, without being rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory, get_profile
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.testing import KimiEmulator
from langchain_kimi_context.testing.validation import known_profiles

SMALL = "kimi-window-test-20k"
WINDOW = 20_000


@pytest.fixture
def small_emulator(make_emulator: Any) -> Iterator[KimiEmulator]:
    base = get_profile("kimi-k2.6")
    profile = KimiModelProfile(
        name=SMALL, context_window=WINDOW, max_output_tokens=4_096, pricing=base.pricing
    )
    forget_learned_windows()
    yield make_emulator(profiles={**known_profiles(), SMALL: profile})
    forget_learned_windows()


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
