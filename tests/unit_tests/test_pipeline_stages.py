"""One pipeline, every face: ``PIPELINE_STAGES`` == ``prepare_context`` == the agent's nodes.

For random corrupted histories (the strategies of ``test_pipeline_properties``), with
random limits, hysteresis, session kinds, windows, truncation modes and oversized tool
results:

- folding :data:`PIPELINE_STAGES` with :func:`run_stages` gives exactly what
  ``prepare_context`` returns, and the same reports;
- the agent graph's own node functions (``preflight`` then one node per stage, taken
  from the compiled graph), chained the way LangGraph chains them, leave exactly
  ``prepare_context``'s output for the call, store the same per-stage reports, and a
  node that lost the transient view (a restarted process) rebuilds the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from langchain_kimi_context import (
    PIPELINE_STAGES,
    ContextPolicy,
    KimiChatModel,
    PipelineReport,
    RequestTruncationReport,
    StageContext,
    create_kimi_agent,
    prepare_context,
    run_stages,
    truncate_for_request,
)
from langchain_kimi_context.agent import stages as agent_stages
from langchain_kimi_context.agent.nodes import PIPELINE_NODES, AgentRuntime
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.pairing import REPAIR_AFTER_LIMIT_STAGE
from tests.unit_tests.test_pipeline_properties import COUNTER, SETTINGS, corrupted_histories

pytestmark = pytest.mark.filterwarnings(
    "ignore::langchain_kimi_context.context.ContextWindowWarning"
)

# ~43K characters, ~24K tokens (hex numbers tokenise densely): one overflows a 20K window
BIG = "\n".join(
    f"{i:06d} " + " ".join(f"{(i * 7919 + k * 104729) % 1000003:x}" for k in range(8))
    for i in range(800)
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Any], ContextPolicy, str | None]:
    """A corrupted history (some tool results oversized), a policy and a session key."""
    history = draw(corrupted_histories())
    for i, message in enumerate(history):
        if isinstance(message, ToolMessage) and draw(st.booleans()):
            history[i] = message.model_copy(update={"content": f"{message.content}\n{BIG}"})
    policy = ContextPolicy(
        context_window=draw(st.sampled_from([None, 20_000, 20_000, 60_000])),
        reserved_output_tokens=1_000,
        history_limit=draw(st.sampled_from([None, 1, 2, 4])),
        history_hysteresis=draw(st.integers(0, 2)),
        dm_history_limit=1,
        tool_result_truncation=draw(st.sampled_from(["auto", "auto", "always", "never"])),
    )
    session_key = draw(st.sampled_from([None, None, "slack:dm:alice"]))
    return history, policy, session_key


def _dump(messages: list[BaseMessage]) -> list[str]:
    return [m.model_dump_json() for m in messages]


def _events(report: PipelineReport) -> None:
    if report.limit.cut:
        event("limit cut")
    if report.truncation is not None and report.truncation.budget_chars is not None:
        event("truncated to a budget")
    elif report.truncation is not None and report.truncation.changed:
        event("truncated to the per-result cap")


@SETTINGS
@given(case=cases())
def test_folding_pipeline_stages_is_prepare_context(
    case: tuple[list[Any], ContextPolicy, str | None],
) -> None:
    history, policy, session_key = case
    expected, report = prepare_context(
        history, policy, token_counter=COUNTER, session_key=session_key
    )
    _events(report)
    ctx = StageContext.build(policy, token_counter=COUNTER, session_key=session_key)
    out, last_ctx, reports = run_stages(history, ctx)
    assert _dump(list(out)) == _dump(expected)
    assert [stage.name for stage in PIPELINE_STAGES] == list(reports)
    assert last_ctx.limit_cut is report.limit.cut
    truncate = reports["truncate_results"]
    assert isinstance(truncate, RequestTruncationReport)
    assert truncate.guard == report.guard
    assert truncate.truncation == report.truncation
    assert reports["sanitize"] == report.sanitize
    assert reports["repair_pairing"] == report.pairing
    assert reports["limit_turns"] == report.limit
    assert reports["repair_after_limit"] == report.pairing_after_limit


def _agent_runtime(policy: ContextPolicy) -> tuple[AgentRuntime, dict[str, Callable[..., Any]]]:
    agent = create_kimi_agent(
        KimiChatModel(api_key="sk-test"), checkpointer=False, policy=policy, token_counter=COUNTER
    )
    nodes = {name: agent.nodes[name].bound.func for name in PIPELINE_NODES}  # type: ignore[attr-defined]
    runtime = agent.nodes["call_model"].bound.func.__self__  # type: ignore[attr-defined]
    assert isinstance(runtime, AgentRuntime)
    return runtime, nodes


@SETTINGS
@given(case=cases())
def test_the_agent_node_chain_sends_what_prepare_context_returns(
    case: tuple[list[Any], ContextPolicy, str | None],
) -> None:
    history, policy, session_key = case
    runtime, nodes = _agent_runtime(policy)
    state: dict[str, Any] = {"messages": history, "context": {"session_key": session_key}}
    expected, report = prepare_context(
        runtime.base_view(state),
        policy,
        profile=runtime.profile,
        token_counter=COUNTER,
        session_key=session_key,
    )
    _events(report)
    config: Any = {"configurable": {}}
    reports: dict[str, Any] = {}
    for name in PIPELINE_NODES:
        # a restarted process resuming here rebuilds the same input from the log
        if name != "preflight":
            fresh = {k: v for k, v in state.items() if not k.startswith("kimi_")}
            view, ctx = runtime.stage_input(fresh, name)
            assert _dump(view) == _dump(state["kimi_view"])
            assert ctx == state["kimi_stage_context"]
        update = nodes[name](state, config)
        reports.update(update.pop("reports"))
        update.pop("turn", None)
        state.update(update)
    sent, _ = runtime.stage_input(state, "call_model")
    assert _dump(sent) == _dump(expected)
    fresh = {k: v for k, v in state.items() if not k.startswith("kimi_")}
    assert _dump(runtime.stage_input(fresh, "call_model")[0]) == _dump(expected)
    assert _dump(runtime.prepare(history, state)) == _dump(expected)
    # each node stored its stage's report, the same as prepare_context's
    assert reports["sanitize"] == agent_stages.stage_report(report.sanitize)
    assert reports["repair_pairing"] == agent_stages.stage_report(report.pairing)
    assert reports["limit_turns"] == agent_stages.stage_report(report.limit)
    assert reports["repair_after_limit"] == agent_stages.stage_report(
        report.pairing_after_limit, skip_reason=REPAIR_AFTER_LIMIT_STAGE.skip_reason
    )
    assert reports["repair_after_limit"].get("ran", True) is report.limit.cut
    assert reports["truncate_results"]["fits"] is report.guard.fits
    assert reports["truncate_results"]["estimated_tokens"] == report.guard.estimated_tokens
    assert reports["truncate_results"]["applied"] is (report.truncation is not None)


def test_repair_runs_before_the_limit_so_messages_typed_during_a_tool_call_survive() -> None:
    # The user typed a message while a tool ran: it sits between the call and its
    # result. The canonical order repairs first (the message moves after the result and
    # joins the next user message), then limits. Limiting first (the agent's old node
    # order) counted it as a turn of its own and cut the whole tool span with it.
    history: list[BaseMessage] = [
        HumanMessage("list the files", id="u1"),
        AIMessage("", tool_calls=[{"id": "c1", "name": "ls", "args": {}}], id="a1"),
        HumanMessage("only python files", id="u2"),
        ToolMessage("a.py b.py", tool_call_id="c1", id="t1"),
        HumanMessage("and sort them", id="u3"),
    ]
    policy = ContextPolicy(history_limit=2)
    out, report = prepare_context(history, policy, token_counter=COUNTER)
    assert [m.id for m in out] == ["u1", "a1", "t1", "u3"]
    assert out[-1].content == "only python files\n\nand sort them"
    assert report.pairing.moved_messages == ("u2",)
    assert not report.limit.cut
    _, nodes = _agent_runtime(policy)
    state: dict[str, Any] = {"messages": history}
    for name in PIPELINE_NODES:
        update = nodes[name](state, {"configurable": {}})
        update.pop("reports")
        update.pop("turn", None)
        state.update(update)
    assert _dump(state["kimi_view"]) == _dump(out)


def test_truncate_for_request_budget_frees_about_the_overflow() -> None:
    call = {"id": "c1", "name": "cat", "args": {}}
    history: list[BaseMessage] = [
        HumanMessage("cat both", id="u"),
        AIMessage("", tool_calls=[call, {**call, "id": "c2"}], id="a"),
        ToolMessage(BIG, tool_call_id="c1", id="t1"),
        ToolMessage(BIG, tool_call_id="c2", id="t2"),
    ]
    policy = ContextPolicy(context_window=20_000, reserved_output_tokens=1_000)
    window = resolve_context_window(policy)
    out, report = truncate_for_request(history, policy, window, token_counter=COUNTER)
    before = COUNTER.count_messages(history)
    assert report.route == "truncate_tool_results"
    assert report.applied
    assert report.truncation is not None
    assert report.truncation.budget_chars is not None
    assert report.guard.fits  # re-estimated after the cut
    assert report.guard.estimated_tokens == COUNTER.count_messages(out) < before
    # never: the same decision input, nothing cut, the estimate says it does not fit
    never = ContextPolicy(
        context_window=20_000, reserved_output_tokens=1_000, tool_result_truncation="never"
    )
    same, skipped = truncate_for_request(history, never, window, token_counter=COUNTER)
    assert same is history
    assert not skipped.applied
    assert skipped.truncation is None
    assert not skipped.guard.fits
    assert skipped.route == "truncate_tool_results"
