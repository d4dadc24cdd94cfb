"""KimiChatMessageHistory inside RunnableWithMessageHistory, over the emulator."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from langchain_kimi_context import (
    ContextPolicy,
    KimiChatMessageHistory,
    KimiChatModel,
    RollingSnapshotMemory,
)
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.testing import KimiEmulator

warnings.filterwarnings("ignore", category=UserWarning)
pytestmark = pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Iterator[None]:
    """Windows learned from emulated overflow errors are process-wide: drop them."""
    yield
    forget_learned_windows()


def _chain(emu: KimiEmulator) -> Any:
    model = KimiChatModel(model="kimi-k2.6", api_key=emu.api_key, base_url=emu.base_url)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a refactoring assistant."),
            MessagesPlaceholder("history"),
            ("human", "{input}"),
        ]
    )
    return prompt | model


def _chat_bodies(emu: KimiEmulator) -> list[Any]:
    return [r.body for r in emu.requests if r.path.endswith("/chat/completions")]


def test_one_line_swap_in_runnable_with_message_history(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    memory = RollingSnapshotMemory(
        KimiChatModel(model="kimi-k2.6", api_key=emulator.api_key, base_url=emulator.base_url),
        db_path=tmp_path / "m.db",
    )
    chain = RunnableWithMessageHistory(
        _chain(emulator),
        memory.history,  # was: lambda sid: InMemoryChatMessageHistory()
        input_messages_key="input",
        history_messages_key="history",
    )
    cfg: Any = {"configurable": {"session_id": "user-1"}}
    assert chain.invoke({"input": "@say first answer"}, cfg).content == "first answer"
    assert chain.invoke({"input": "@say second answer"}, cfg).content == "second answer"
    # the history reached the second request
    second = _chat_bodies(emulator)[-1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "first answer"
    # stored in the session (same checkpoints as the graph), with usage on the replies
    log = memory.log("user-1")
    assert [m.type for m in log] == ["human", "ai", "human", "ai"]
    assert getattr(log[1], "usage_metadata", None)
    # snapshots and rollback work on the app's history
    snap = memory.snapshot("user-1", name="two-turns")
    chain.invoke({"input": "@say third"}, cfg)
    memory.rollback("user-1", snap)
    assert len(KimiChatMessageHistory(memory, "user-1").messages) == 4
    # the same app code with the in-memory history behaves the same for short chats
    plain = RunnableWithMessageHistory(
        _chain(emulator),
        lambda sid: InMemoryChatMessageHistory(),
        input_messages_key="input",
        history_messages_key="history",
    )
    assert plain.invoke({"input": "@say x"}, cfg).content == "x"


def test_history_compacts_long_sessions_automatically(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    policy = ContextPolicy(
        context_window=32_000,
        compact_trigger_tokens=6_000,
        compact_trigger_ratio=None,
        compact_reserve_tokens=None,
        compact_target_share=0.1,
    )
    memory = RollingSnapshotMemory(
        KimiChatModel(model="kimi-k2.6", api_key=emulator.api_key, base_url=emulator.base_url),
        db_path=tmp_path / "m.db",
        policy=policy,
    )
    chain = RunnableWithMessageHistory(
        _chain(emulator),
        memory.history,
        input_messages_key="input",
        history_messages_key="history",
    )
    cfg: Any = {"configurable": {"session_id": "long"}}
    for i in range(10):
        chain.invoke({"input": f"Refactor part {i}. TODO: test part {i}.\n@reply 700"}, cfg)
    assert any(s.reason == "compaction" for s in memory.list_snapshots("long"))
    history = memory.history("long").messages
    assert is_marked(history[0], "summary")
    assert len(history) < len(memory.log("long")) == 20
    last = _chat_bodies(emulator)[-1]["messages"]
    assert last[1]["content"].startswith("Previous context has been compacted")


def test_clear_rolls_back_to_creation(emulator: KimiEmulator, tmp_path: Path) -> None:
    memory = RollingSnapshotMemory("kimi-k2.6", api_key="sk-x", db_path=tmp_path / "m.db")
    history = memory.history("c", system="Be terse.")
    history.add_user_message("hello")
    history.add_ai_message("hi")
    assert [m.type for m in history.messages] == ["system", "human", "ai"]
    snap = history.snapshot("before-clear")
    history.clear()
    assert [m.type for m in history.messages] == ["system"]
    # nothing deleted: the state before the clear is still reachable
    memory.rollback("c", snap)
    assert [m.content for m in history.messages] == ["Be terse.", "hello", "hi"]
