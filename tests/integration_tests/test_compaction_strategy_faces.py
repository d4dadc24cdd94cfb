"""One custom compaction strategy, defined here, passed to every face (real HTTP).

The strategy below lives only in this test module: adding a compaction strategy needs
its own module (here: this file) and nothing else, and every face takes it through
``compaction=``. Each face must actually run it (its marker reaches the emulator) on the
calibrated numbers of the compaction service (the trigger's size starts from the
server's count; the target is scaled from it).
"""

from __future__ import annotations

import operator
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from langchain_kimi_context import (
    ContextPolicy,
    KimiChatModel,
    KimiContextMiddleware,
    KimiPreModelHook,
    RollingSnapshotMemory,
    create_kimi_agent,
)
from langchain_kimi_context.context.compaction import (
    Compaction,
    CompactionContext,
    CompactionDraft,
    apply_compactions,
    compaction_target,
    forget_learned_windows,
)
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.messages import is_user_turn
from langchain_kimi_context.testing import KimiEmulator

warnings.filterwarnings("ignore", category=UserWarning)

MARKER = "[custom compaction: older turns dropped by KeepLastTurn]"

POLICY = ContextPolicy(
    context_window=32_000,
    compact_trigger_tokens=2_500,
    compact_trigger_ratio=None,
    compact_reserve_tokens=None,
    compact_budget="off",
)


class KeepLastTurn:
    """Replace every turn but the last with one marker message (no model call)."""

    name = "keep_last_turn"

    def __init__(self) -> None:
        self.calls: list[CompactionContext] = []

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        self.calls.append(ctx)
        turns = [m for m in ctx.log if is_user_turn(m)]
        if len(turns) < 2:
            return draft
        summary = with_marker(SystemMessage(MARKER, id=f"keep-last-{turns[-1].id}"), "summary")
        return replace(
            draft,
            summary=summary,
            first_kept_id=turns[-1].id,
            strategies=(*draft.strategies, self.name),
        )

    async def acompact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        return self.compact(ctx, draft)


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Iterator[None]:
    yield
    forget_learned_windows()


def _model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(
        model="kimi-k2.6", api_key=emu.api_key, base_url=emu.base_url, max_retries=0
    )


def _sent_marker(emu: KimiEmulator) -> bool:
    bodies = [r.body for r in emu.requests if r.path.endswith("/chat/completions")]
    return any(MARKER in str(m.get("content")) for b in bodies for m in b["messages"])


def _assert_used_on_calibrated_numbers(strategy: KeepLastTurn) -> None:
    assert strategy.calls, "the face never called the strategy"
    ctx = strategy.calls[0]
    decision = ctx.decision
    assert decision is not None
    assert decision.reason == "absolute"
    assert ctx.trigger == "absolute"
    # the size starts from the server's count of the last request, not a local estimate
    server = [
        int((m.usage_metadata or {}).get("input_tokens", 0))
        for m in ctx.log
        if isinstance(m, AIMessage)
    ]
    assert decision.tokens >= max(server) > 0
    local = ctx.tokens(apply_compactions(ctx.log, ctx.records))
    expected = compaction_target(
        ctx.policy, ctx.window, "absolute", tokens=decision.tokens, local_tokens=local
    )
    assert ctx.target_tokens == expected


def _turns(say: Any) -> None:
    for i in range(5):
        say(f"Turn {i}: explain step {i}.\n@reply 700")


def test_protocol() -> None:
    assert isinstance(KeepLastTurn(), Compaction)


def test_create_kimi_agent_uses_the_strategy(emulator: KimiEmulator) -> None:
    strategy = KeepLastTurn()
    agent = create_kimi_agent(
        _model(emulator), policy=POLICY, checkpointer=InMemorySaver(), compaction=strategy
    )
    cfg: Any = {"configurable": {"thread_id": "agent"}}
    _turns(lambda text: agent.invoke({"messages": [("user", text)]}, cfg))
    state = agent.get_state(cfg).values
    assert any(r["strategy"] == "keep_last_turn" for r in state["compactions"])
    assert _sent_marker(emulator)
    _assert_used_on_calibrated_numbers(strategy)


def test_middleware_uses_the_strategy(emulator: KimiEmulator) -> None:
    strategy = KeepLastTurn()
    agent = create_agent(
        _model(emulator),
        tools=[],
        middleware=[KimiContextMiddleware(POLICY, compaction=strategy)],
        checkpointer=InMemorySaver(),
    )
    cfg: Any = {"configurable": {"thread_id": "middleware"}}
    outs: list[dict[str, Any]] = []
    _turns(lambda text: outs.append(agent.invoke({"messages": [("user", text)]}, cfg)))
    records = outs[-1]["kimi_compactions"]
    assert any(r["strategy"] == "keep_last_turn" for r in records)
    assert _sent_marker(emulator)
    _assert_used_on_calibrated_numbers(strategy)


def test_rolling_snapshot_memory_uses_the_strategy(emulator: KimiEmulator) -> None:
    strategy = KeepLastTurn()
    memory = RollingSnapshotMemory(
        _model(emulator),
        policy=POLICY,
        db_path=os.path.join(tempfile.mkdtemp(), "m.db"),
        compaction=strategy,
    )
    sid = memory.create_session()
    _turns(lambda text: memory.chat(sid, text))
    view: list[BaseMessage] = memory.messages(sid)
    assert any(MARKER in str(m.content) for m in view)
    assert _sent_marker(emulator)
    _assert_used_on_calibrated_numbers(strategy)


def test_pre_model_hook_uses_the_strategy_without_a_summariser(emulator: KimiEmulator) -> None:
    from langgraph.prebuilt import create_react_agent
    from langgraph.prebuilt.chat_agent_executor import AgentState

    class State(AgentState):  # the hook's records accumulate, as in KimiContextState
        kimi_compactions: Annotated[list[dict[str, Any]], operator.add]

    strategy = KeepLastTurn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = create_react_agent(
            _model(emulator),
            [],
            pre_model_hook=KimiPreModelHook(POLICY, compaction=strategy),  # no model
            state_schema=State,
            checkpointer=InMemorySaver(),
        )
    cfg: Any = {"configurable": {"thread_id": "hook"}}
    _turns(lambda text: agent.invoke({"messages": [("user", text)]}, cfg))
    records = agent.get_state(cfg).values["kimi_compactions"]
    assert any(r["strategy"] == "keep_last_turn" for r in records)
    assert _sent_marker(emulator)
    _assert_used_on_calibrated_numbers(strategy)
