"""KimiContextMiddleware inside langchain's create_agent, and KimiPreModelHook, over HTTP."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelRetryMiddleware
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from langchain_kimi_context import (
    ContextPolicy,
    KimiChatModel,
    KimiConfigurationError,
    KimiContextMiddleware,
    KimiPreModelHook,
)
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.testing import KimiEmulator

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = ContextPolicy(
    context_window=32_000,
    compact_trigger_tokens=9_000,
    compact_trigger_ratio=None,
    compact_reserve_tokens=None,
    compact_target_share=0.15,
)


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Iterator[None]:
    """Windows learned from emulated overflow errors are process-wide: drop them."""
    yield
    forget_learned_windows()


def read_file(path: str) -> str:
    """Read a source file of the project."""
    body = "".join(f"def helper_{i}(x):\n    return x + {i}\n" for i in range(150))
    return f"# {path}\n{body}"


def _model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(
        model="kimi-k2.6", api_key=emu.api_key, base_url=emu.base_url, max_retries=0
    )


def _chat_requests(emu: KimiEmulator) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith("/chat/completions")]


def _agent(emu: KimiEmulator, policy: ContextPolicy | None = None, **retry: Any) -> Any:
    return create_agent(
        _model(emu),
        tools=[read_file],
        system_prompt="You refactor code.",
        middleware=[
            KimiContextMiddleware(policy),
            ModelRetryMiddleware(max_retries=2, initial_delay=0.0, jitter=False, **retry),
        ],
        checkpointer=InMemorySaver(),
    )


def test_works_with_model_retry_middleware_on_a_500(emulator: KimiEmulator) -> None:
    agent = _agent(emulator)
    emulator.faults.server_error(at={2})  # the call after the tool result fails once
    cfg: Any = {"configurable": {"thread_id": "t1"}}
    out = agent.invoke({"messages": [("user", '@call read_file {"path": "a.py"}\n@say done')]}, cfg)
    assert out["messages"][-1].content == "done"
    assert [r.status for r in _chat_requests(emulator)] == [200, 500, 200]
    # ModelRetryMiddleware retried inside our prepared request: the retry sent the same body
    reqs = _chat_requests(emulator)
    assert reqs[1].body["messages"] == reqs[2].body["messages"]
    assert reqs[0].body["messages"][0] == {"role": "system", "content": "You refactor code."}
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]


def test_pipeline_repairs_a_dangling_tool_call_before_sending(emulator: KimiEmulator) -> None:
    agent = _agent(emulator)
    cfg: Any = {"configurable": {"thread_id": "t2"}}
    dangling = AIMessage(
        "",
        tool_calls=[{"name": "read_file", "args": {"path": "x"}, "id": "call_lost"}],
        additional_kwargs={"reasoning_content": "I will read x."},
    )
    agent.update_state(cfg, {"messages": [HumanMessage("read x"), dangling]})
    out = agent.invoke({"messages": [("user", "@say recovered")]}, cfg)
    assert out["messages"][-1].content == "recovered"
    sent = _chat_requests(emulator)[-1].body["messages"]
    results = [m for m in sent if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["call_lost"]  # synthetic result added
    # the stored history is untouched (the repair only shapes the request)
    state = agent.get_state(cfg).values
    assert not any(isinstance(m, ToolMessage) for m in state["messages"])


def test_compacts_past_the_trigger_without_rewriting_messages(emulator: KimiEmulator) -> None:
    agent = _agent(emulator, SMALL)
    cfg: Any = {"configurable": {"thread_id": "t3"}}
    for i in range(8):
        agent.invoke(
            {
                "messages": [
                    ("user", f'Refactor m{i}.py\n@call read_file {{"path": "m{i}.py"}}\n@reply 80')
                ]
            },
            cfg,
        )
    state = agent.get_state(cfg).values
    assert state.get("kimi_compactions"), "the trigger never fired"
    assert len(state["messages"]) == 8 * 4  # nothing removed from the history
    last_sent = _chat_requests(emulator)[-1].body["messages"]
    cleared = [m for m in last_sent if m["role"] == "tool" and "cleared" in m["content"]]
    summary = [m for m in last_sent if str(m.get("content")).startswith("Previous context")]
    assert cleared or summary
    full = sum(len(str(m.content)) for m in state["messages"])
    assert sum(len(str(m.get("content") or "")) for m in last_sent) < full


def test_overflow_is_caught_compacted_and_retried(emulator: KimiEmulator) -> None:
    agent = _agent(emulator)
    cfg: Any = {"configurable": {"thread_id": "t4"}}
    for i in range(3):
        agent.invoke({"messages": [("user", f"turn {i}\n@reply 300")]}, cfg)
    emulator.reset()
    emulator.faults.overflow(at={1})
    out = agent.invoke({"messages": [("user", "@say after overflow")]}, cfg)
    assert out["messages"][-1].content == "after overflow"
    reqs = _chat_requests(emulator)
    assert reqs[0].status == 400  # the overflow
    assert reqs[-1].status == 200
    # ModelRetryMiddleware did not retry the overflow blindly: a compaction happened between
    assert len(reqs[-1].body["messages"]) < len(reqs[0].body["messages"])
    records = agent.get_state(cfg).values["kimi_compactions"]
    assert records[-1]["trigger"] == "overflow"


def test_async_agent(emulator: KimiEmulator) -> None:
    agent = _agent(emulator)
    emulator.faults.server_error(at={1})
    out = asyncio.run(
        agent.ainvoke(
            {"messages": [("user", "@say async ok")]}, {"configurable": {"thread_id": "t5"}}
        )
    )
    assert out["messages"][-1].content == "async ok"
    assert [r.status for r in _chat_requests(emulator)] == [500, 200]


def test_pre_model_hook_in_a_langgraph_prebuilt_agent(emulator: KimiEmulator) -> None:
    from langgraph.prebuilt import create_react_agent
    from langgraph.prebuilt.chat_agent_executor import AgentState

    from langchain_kimi_context.middleware import RECORDS_KEY

    class State(AgentState):
        kimi_compactions: list[dict[str, Any]]

    model = _model(emulator)
    hook = KimiPreModelHook(SMALL, model=model, tools=[read_file])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = create_react_agent(
            model,
            [read_file],
            pre_model_hook=hook,
            state_schema=State,
            checkpointer=InMemorySaver(),
        )
    cfg: Any = {"configurable": {"thread_id": "h1"}}
    dangling = AIMessage(
        "",
        tool_calls=[{"name": "read_file", "args": {}, "id": "c0"}],
        additional_kwargs={"reasoning_content": "Reading."},
    )
    agent.update_state(cfg, {"messages": [HumanMessage("start"), dangling]})
    for i in range(6):
        agent.invoke(
            {"messages": [("user", f'step {i}\n@call read_file {{"path": "m{i}.py"}}\n@reply 50')]},
            cfg,
        )
    state = agent.get_state(cfg).values
    assert state.get(RECORDS_KEY), "no compaction record was stored by the hook"
    first = _chat_requests(emulator)[0].body["messages"]
    assert [m["role"] for m in first][:3] == ["user", "assistant", "tool"]  # repaired
    assert len(state["messages"]) == 2 + 6 * 4  # the stored history is untouched


def test_pre_model_hook_unit_behaviour() -> None:
    hook = KimiPreModelHook(ContextPolicy())
    msgs = [
        SystemMessage("sys", id="s"),
        HumanMessage("a", id="1"),
        HumanMessage("b", id="2"),
        ToolMessage("orphan", tool_call_id="zz", id="3"),
    ]
    out = hook({"messages": msgs})
    assert set(out) == {"llm_input_messages"}
    sent = out["llm_input_messages"]
    assert [m.type for m in sent] == ["system", "human"]  # merged users, orphan dropped
    assert msgs[1].content == "a"  # originals untouched
    assert not any(is_marked(m, "summary") for m in sent)


def test_middleware_rejects_a_too_small_window(emulator: KimiEmulator) -> None:
    from langchain_kimi_context import ContextWindowTooSmallError

    agent = _agent(emulator, ContextPolicy(context_window=8_000))
    with pytest.raises(ContextWindowTooSmallError):
        agent.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t6"}})
    assert _chat_requests(emulator) == []


def test_a_dict_policy_is_a_clear_error() -> None:
    # used to be accepted and fail inside the first model call with an AttributeError
    with pytest.raises(KimiConfigurationError, match=r"KimiContextMiddleware\(policy=\.\.\.\)"):
        KimiContextMiddleware({"context_window": 64_000})  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match=r"KimiPreModelHook\(policy=\.\.\.\)"):
        KimiPreModelHook("strict")  # type: ignore[arg-type]
