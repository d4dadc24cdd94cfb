"""Fail fast on configuration: a dead endpoint is a typed error naming the URL in seconds.

Interrupts are for failures the user can fix by resuming (an overloaded server); a
wrong ``base_url`` on the first call of a session is not one of them.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory, SessionTurnError
from langchain_kimi_context.agent import AgentSettings, create_kimi_agent
from langchain_kimi_context.errors import KimiConnectionError, KimiNotFoundError
from langchain_kimi_context.testing import KimiEmulator


def _dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("kind", ["refused", "dns"])
def test_a_dead_endpoint_on_the_first_call_raises_within_5_s(tmp_path: Path, kind: str) -> None:
    url = _dead_url() if kind == "refused" else "http://kimi-endpoint.invalid/v1"
    agent = create_kimi_agent(
        KimiChatModel(model="kimi-k2.6", base_url=url, api_key="sk-test"),
        db_path=tmp_path / "a.sqlite",
    )
    cfg = {"configurable": {"thread_id": "dead"}}
    start = time.perf_counter()
    with pytest.raises(KimiConnectionError) as info:
        agent.invoke({"messages": [HumanMessage("hello")]}, cfg)
    elapsed = time.perf_counter() - start
    print(f"\n[fail fast] {kind}: KimiConnectionError after {elapsed:.2f} s")
    assert elapsed < 5
    assert url in str(info.value)
    assert info.value.url == url
    # the user's message is kept (nothing stored is lost); no interrupt is pending
    state = agent.get_state(cfg)
    assert [m.content for m in state.values["messages"]] == ["hello"]
    assert not state.interrupts


async def test_connection_refused_under_ainvoke(tmp_path: Path) -> None:
    url = _dead_url()
    agent = create_kimi_agent(
        KimiChatModel(model="kimi-k2.6", base_url=url, api_key="sk-test"),
        db_path=tmp_path / "a.sqlite",
    )
    start = time.perf_counter()
    with pytest.raises(KimiConnectionError, match=r"127\.0\.0\.1"):
        await agent.ainvoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "d"}})
    assert time.perf_counter() - start < 5


def test_memory_chat_on_a_dead_endpoint(tmp_path: Path) -> None:
    url = _dead_url()
    memory = RollingSnapshotMemory(
        KimiChatModel(model="kimi-k2.6", base_url=url, api_key="sk-test"),
        db_path=tmp_path / "m.sqlite",
    )
    sid = memory.create_session(system="Be terse.")
    start = time.perf_counter()
    with pytest.raises(SessionTurnError) as info:
        memory.chat(sid, "hello")
    assert time.perf_counter() - start < 5
    assert isinstance(info.value.cause, KimiConnectionError)
    assert url in str(info.value)
    assert [m.type for m in memory.log(sid)] == ["system"]  # rolled back, as before


def test_wrong_path_is_a_typed_error_naming_the_endpoint(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    base = emulator.base_url.rsplit("/v1", 1)[0] + "/nothing-here"
    agent = create_kimi_agent(
        KimiChatModel(model="kimi-k2.6", base_url=base, api_key=emulator.api_key),
        db_path=tmp_path / "a.sqlite",
    )
    start = time.perf_counter()
    with pytest.raises(KimiNotFoundError) as info:
        agent.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "p"}})
    assert time.perf_counter() - start < 5
    assert emulator.base_url.split("/v1")[0] in str(info.value)


def test_a_dead_endpoint_mid_session_still_pauses_for_resume(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    """After a successful call, a connection error is transient: retried, then interrupt."""
    from langchain_kimi_context.agent import RetrySettings

    model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    settings = AgentSettings(
        retry=RetrySettings(max_attempts=2, initial_interval=0.001), max_consecutive_failures=1
    )
    agent = create_kimi_agent(model, db_path=tmp_path / "a.sqlite", settings=settings)
    cfg = {"configurable": {"thread_id": "mid"}}
    agent.invoke({"messages": [("user", "@say first")]}, cfg)
    dead = create_kimi_agent(
        KimiChatModel(model="kimi-k2.6", base_url=_dead_url(), api_key="sk-test"),
        db_path=tmp_path / "a.sqlite",
        settings=settings,
    )
    out = dead.invoke({"messages": [("user", "second")]}, cfg)
    assert out["__interrupt__"]
    assert "KimiConnectionError" in str(out["__interrupt__"][0].value)
