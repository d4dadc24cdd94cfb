"""Input hygiene: each bad input is a clear error or a report, and the stored history is unchanged.

* a wrong agent input shape is a local ``KimiInputError`` (no request is sent);
* lone surrogates become U+FFFD (never a silent ``?``) and are reported;
* a compaction whose result is not smaller is rejected and reported;
* the overflow error says exactly what recovery tried;
* the middleware's ``invoke()`` output carries ``kimi_compactions``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_kimi_context import ContextPolicy, KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.context.compaction import OverflowRecovery
from langchain_kimi_context.context.sanitize import sanitize_messages
from langchain_kimi_context.errors import KimiContextOverflowError, KimiInputError
from langchain_kimi_context.testing import KimiEmulator

FAST = AgentSettings(retry=RetrySettings(initial_interval=0.001))


def _model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)


def _stored(agent: Any, cfg: Any) -> list[tuple[str, Any, str | None]]:
    return [(m.type, m.content, m.id) for m in agent.get_state(cfg).values["messages"]]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"input": "hello"}, "got the key(s) ['input']"),
        ("hello", "got a str"),
        ([("user", "hello")], "got a list"),
        ({"messages": []}, "no messages"),
        ({"messages": [42]}, "messages[0]"),
        ({"messages": "hello"}, "a list of messages"),
    ],
)
def test_wrong_agent_input_shapes_are_local_errors(
    emulator: KimiEmulator, tmp_path: Path, bad: Any, says: str
) -> None:
    agent = create_kimi_agent(_model(emulator), db_path=tmp_path / "a.sqlite", settings=FAST)
    cfg = {"configurable": {"thread_id": "shape"}}
    agent.invoke({"messages": [("user", "@say first")]}, cfg)
    before, requests = _stored(agent, cfg), len(emulator.chat_requests)
    with pytest.raises(KimiInputError, match=r"\{'messages': \[") as info:
        agent.invoke(bad, cfg)
    assert says in str(info.value)
    assert _stored(agent, cfg) == before
    assert len(emulator.chat_requests) == requests  # nothing was sent


async def test_wrong_input_shape_under_ainvoke(emulator: KimiEmulator, tmp_path: Path) -> None:
    agent = create_kimi_agent(_model(emulator), db_path=tmp_path / "a.sqlite", settings=FAST)
    with pytest.raises(KimiInputError):
        await agent.ainvoke({"input": "hi"}, {"configurable": {"thread_id": "x"}})


def test_lone_surrogates_become_replacement_characters_and_are_reported(
    emulator: KimiEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = create_kimi_agent(_model(emulator), db_path=tmp_path / "a.sqlite", settings=FAST)
    cfg = {"configurable": {"thread_id": "sur"}}
    agent.invoke({"messages": [("user", "@say first")]}, cfg)
    before = _stored(agent, cfg)
    caplog.set_level(logging.WARNING, logger="langchain_kimi_context")
    out = agent.invoke({"messages": [HumanMessage("pasted \ud83d text\udc00\n@say ok")]}, cfg)
    assert out["messages"][-1].content == "ok"
    stored = _stored(agent, cfg)
    assert stored[: len(before)] == before  # earlier history untouched
    assert stored[len(before)][1] == "pasted \ufffd text\ufffd\n@say ok"  # not "?"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 unencodable character(s)" in w and "U+FFFD" in w for w in warnings)
    # the request the emulator got carries U+FFFD too
    assert "\ufffd" in str(emulator.chat_requests[-1].body["messages"][-1]["content"])


def test_sanitize_replaces_and_reports_lone_surrogates() -> None:
    history = [
        HumanMessage("ok", id="u0"),
        AIMessage("fine", id="a0"),
        HumanMessage(["bad \udfff", {"type": "text", "text": "x\ud800"}], id="u1"),
    ]
    out, report = sanitize_messages(history, ContextPolicy())
    assert out[2].content == ["bad \ufffd", {"type": "text", "text": "x\ufffd"}]
    assert report.replaced_unencodable == ("u1: 2",)
    assert report.changed
    assert history[2].content[0] == "bad \udfff"  # the input is never mutated
    # a valid surrogate PAIR (e.g. from a UTF-16 source) becomes the real character
    out, report = sanitize_messages([HumanMessage("smile \ud83d\ude00", id="p")], ContextPolicy())
    assert out[0].content == "smile \U0001f600"
    assert report.replaced_unencodable == ()


def test_memory_append_with_lone_surrogate(
    emulator: KimiEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = RollingSnapshotMemory(_model(emulator), db_path=tmp_path / "m.sqlite")
    sid = memory.create_session(system="sys")
    caplog.set_level(logging.WARNING, logger="langchain_kimi_context")
    memory.append_message(sid, "note \ud800 end")
    assert [m.content for m in memory.log(sid)] == ["sys", "note \ufffd end"]
    assert any("U+FFFD" in r.getMessage() for r in caplog.records)


def test_a_compaction_that_does_not_shrink_is_rejected_and_reported(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    memory = RollingSnapshotMemory(_model(emulator), db_path=tmp_path / "c.sqlite")
    sid = memory.create_session(system="sys")
    for i in range(3):
        memory.chat(sid, f"hi {i}\n@say ok {i}")
    log_before = [(m.type, m.content) for m in memory.log(sid)]
    view_before = [(m.type, m.content) for m in memory.messages(sid)]
    result = memory.compress(sid)  # the summary of 3 tiny turns is larger than they are
    assert result.changed is False
    assert result.record_id is None
    assert any("would grow" in f for f in result.failures)
    assert [(m.type, m.content) for m in memory.log(sid)] == log_before
    assert [(m.type, m.content) for m in memory.messages(sid)] == view_before
    assert memory.usage(sid).compactions == 0


def test_the_overflow_error_says_exactly_what_was_tried() -> None:
    calls: list[int] = []

    def always_overflow(messages: list[Any]) -> Any:
        calls.append(len(messages))
        raise KimiContextOverflowError(
            "Invalid request: Your request exceeded model token limit: 262144 (requested: 300000)",
            window=262_144,
            requested=300_000,
        )

    log = [SystemMessage("s", id="s"), HumanMessage("x " * 100, id="h")]
    recovery = OverflowRecovery(ContextPolicy(), model_name="kimi-k2.6")
    with pytest.raises(KimiContextOverflowError) as info:
        recovery.invoke(always_overflow, log)
    message = str(info.value)
    steps = info.value.recovery_steps  # type: ignore[attr-defined]
    assert "compacted the history 1 time(s)" not in message
    assert "compaction #1 (no progress)" in message  # one attempt, which changed nothing
    assert "1 model call" in message
    assert len(calls) == 1
    # a suggested model is never the one in use, and really has a larger window
    hint = re.search(r"larger context window \(e\.g\. (\S+), ([\d,]+) tokens\)", message)
    if hint is None:
        assert "no known Kimi model has a larger window" in message
    else:
        assert hint.group(1) != "kimi-k2.6"
        assert int(hint.group(2).replace(",", "")) > 262_144
    assert "give_up" in steps


def test_middleware_invoke_output_has_kimi_compactions(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    from langchain.agents import create_agent

    from langchain_kimi_context import KimiContextMiddleware

    policy = ContextPolicy(
        context_window=32_000,
        compact_trigger_tokens=9_000,
        compact_trigger_ratio=None,
        compact_reserve_tokens=None,
        compact_target_share=0.15,
    )

    def read_file(path: str) -> str:
        """Read a file."""
        return f"# {path}\n" + "".join(
            f"def helper_{i}(x):\n    return x + {i}\n" for i in range(150)
        )

    from langgraph.checkpoint.memory import InMemorySaver

    agent = create_agent(
        _model(emulator),
        [read_file],
        middleware=[KimiContextMiddleware(policy=policy)],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "mw"}}
    out = agent.invoke({"messages": [("user", "@say hi")]}, cfg)
    assert out["kimi_compactions"] == []
    for i in range(8):
        text = f'Refactor m{i}.py\n@call read_file {{"path": "m{i}.py"}}\n@reply 80'
        out = agent.invoke({"messages": [HumanMessage(text)]}, cfg)
    assert out["kimi_compactions"]
    record = out["kimi_compactions"][0]
    assert record["tokens_after"] < record["tokens_before"]
    assert len(out["messages"]) == 2 + 8 * 4  # the log itself is never rewritten


def test_agent_overflow_give_up_names_the_tries_and_keeps_the_history(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = create_kimi_agent(_model(emulator), db_path=tmp_path / "o.sqlite", settings=FAST)
    cfg = {"configurable": {"thread_id": "over"}}
    agent.invoke({"messages": [("user", "@say first")]}, cfg)
    before = agent.get_state(cfg).values
    with pytest.raises(KimiContextOverflowError) as info:
        agent.invoke({"messages": [("user", "@fail overflow x20\n@say never")]}, cfg)
    message = str(info.value)
    assert "Automatic recovery tried" in message
    assert "model call(s) refused as too long" in message
    after = agent.get_state(cfg).values
    assert after["messages"][:2] == before["messages"]  # earlier history untouched
    assert [m.type for m in after["messages"]] == ["human", "ai", "human"]  # the new turn kept
    assert after["compactions"] == before["compactions"]
