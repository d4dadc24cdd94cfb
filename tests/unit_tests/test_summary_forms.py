"""The two summary request forms of ``LLMCompaction`` (no I/O: a recording model)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_kimi_context.context.compaction import (
    COMPACTION_REQUEST_LEAD,
    COMPACTION_SYSTEM_PROMPT,
    SUMMARY_HEADER,
    LLMCompaction,
    apply_compactions,
    compact,
    maybe_compact,
)
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.tokens import default_token_counter
from tests.compaction_helpers import SUMMARY, RecordingModel, conversation

TOOL = {
    "type": "function",
    "function": {"name": "ls", "description": "List files.", "parameters": {"type": "object"}},
}


def _policy(**kw: Any) -> ContextPolicy:
    return ContextPolicy(context_window=100_000, compact_retry_backoff_s=0.001, **kw)


def _target(log: list[BaseMessage]) -> int:
    return int(default_token_counter().count_messages(log[-6:]) * 1.9)


def test_cached_prefix_request_is_the_view_plus_one_instruction() -> None:
    model = RecordingModel(replies=[SUMMARY, SUMMARY])
    log = conversation(8)
    policy = _policy(compact_summary_form="cached_prefix")
    _, first = compact(log, policy, model=model, target_tokens=_target(log))
    assert first.record is not None
    (request,) = model.calls
    assert request[:-1] == log  # the conversation exactly as the model saw it
    instruction = str(request[-1].content)
    assert isinstance(request[-1], HumanMessage)
    assert instruction.startswith(COMPACTION_REQUEST_LEAD)
    assert COMPACTION_SYSTEM_PROMPT in instruction
    assert '"user 5: please' in instruction  # where the verbatim tail starts
    marker = get_marker(first.record.summary) if first.record.summary else None
    assert marker is not None
    assert marker["request_form"] == "cached_prefix"
    assert marker["request_tokens"] > 0

    # the next compaction re-sends the compacted view: the earlier summary is in it
    log2 = [*log, *conversation(12, sys=False)[16:]]
    _, second = compact(
        log2, policy, model=model, records=[first.record], target_tokens=_target(log2)
    )
    assert second.record is not None
    request2 = model.calls[1]
    assert request2[:-1] == apply_compactions(log2, [first.record])
    assert str(request2[1].content).startswith(SUMMARY_HEADER)


def test_transcript_form_after_an_overflow_or_near_the_window() -> None:
    log = conversation(8)
    forced = _policy(compact_summary_form="cached_prefix")
    model = RecordingModel(replies=[SUMMARY])
    compact(log, forced, model=model, trigger="overflow", target_tokens=_target(log))
    assert str(model.calls[0][0].content) == COMPACTION_SYSTEM_PROMPT
    small = ContextPolicy(
        context_window=16_000,
        reserved_output_tokens=8_000,
        compact_summary_form="cached_prefix",
        compact_retry_backoff_s=0.001,
    )
    big = conversation(8, words=350)
    model = RecordingModel(replies=[SUMMARY])
    compact(big, small, model=model, target_tokens=2_000)
    assert str(model.calls[0][0].content) == COMPACTION_SYSTEM_PROMPT


def test_a_model_that_cannot_bind_the_tools_gets_the_transcript() -> None:
    log = conversation(8)
    model = RecordingModel(replies=[SUMMARY])  # BaseChatModel.bind_tools: not implemented
    policy = _policy(compact_summary_form="cached_prefix")
    _, report = compact(
        log, policy, model=model, tools=[TOOL], target_tokens=_target(log), strategy=None
    )
    assert report.record is not None
    assert str(model.calls[0][0].content) == COMPACTION_SYSTEM_PROMPT


def test_auto_without_prices_keeps_the_transcript() -> None:
    log = conversation(8)
    model = RecordingModel(replies=[SUMMARY])
    compact(log, _policy(), model=model, strategy=LLMCompaction(model), target_tokens=_target(log))
    assert str(model.calls[0][0].content) == COMPACTION_SYSTEM_PROMPT


def test_a_budget_compaction_summarises_before_clearing_tool_results() -> None:
    model = RecordingModel(replies=[SUMMARY])
    log = conversation(10)
    policy = _policy(compact_budget=2_000, compact_budget_floor_tokens=1_500)
    view, report = maybe_compact(log, policy, model=model)
    assert report is not None
    assert report.trigger == "budget"
    assert report.decision is not None
    assert report.decision.budget == 2_000
    assert report.strategy.startswith("llm_summary")
    assert report.target_tokens == 1_500
    assert str(view[1].content).startswith(SUMMARY_HEADER)


def test_the_cached_request_is_shaped_by_the_callers_prepare_step() -> None:
    model = RecordingModel(replies=[SUMMARY])
    log = conversation(8, sys=False)
    head = SystemMessage("agent system prompt added per request", id="agent-sys")

    def prepare(view: list[BaseMessage]) -> list[BaseMessage]:
        return [head, *view]

    policy = _policy(compact_summary_form="cached_prefix")
    compact(log, policy, model=model, target_tokens=_target(log), prepare=prepare)
    (request,) = model.calls
    assert request[:-1] == prepare(log)
