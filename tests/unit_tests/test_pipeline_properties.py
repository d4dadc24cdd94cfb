"""Property tests of ``prepare_context`` over random corrupted histories.

Histories are drawn as random sequences of user messages, assistant answers, assistant
tool-call turns (parallel calls, ids drawn from a tiny pool so ids get reused), tool
results (answering any pooled id: orphans, duplicates, misplaced, interleaved), empty
messages, errored/aborted turns, bad tool names and unparsable calls. For every one:

- the output passes the emulator's strict validator, converted to wire dicts the way
  the chat model does (``_convert_message_to_dict`` + Kimi's assistant rules), for a
  non-thinking and a thinking model;
- running the pipeline again changes nothing;
- no user, assistant or tool text is lost except what the report lists;
- the input messages are never mutated;
- appending a well-formed continuation never changes the output for the earlier part,
  except at the cut events the limit report announces;
- the incremental memos (stages resuming from the previous call's state) give exactly
  what a fresh computation gives.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_openai.chat_models.base import _convert_message_to_dict

from langchain_kimi_context import (
    ContextPolicy,
    PipelineReport,
    limit_history_turns,
    prepare_context,
    repair_tool_pairing,
    sanitize_messages,
)
from langchain_kimi_context.context._common import content_text
from langchain_kimi_context.context.pipeline import _reset_memos
from langchain_kimi_context.testing import validate_chat_request
from langchain_kimi_context.tokens import ApproximateBackend, TokenCounter

COUNTER = TokenCounter(backend=ApproximateBackend())
POOL = ["c0", "c1", "c2", "call_0", "functions.read_file:0"]
NAMES = ["read_file", "read_file", "grep", "ns:tool.v2", "bad name", "x" * 70, "$web_search"]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def to_wire(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """Convert like KimiChatModel: langchain-openai's converter + Kimi assistant rules."""
    wire = []
    for message in messages:
        converted = _convert_message_to_dict(message)
        if isinstance(message, AIMessage) and converted.get("tool_calls"):
            if not converted.get("content"):
                converted.pop("content", None)
            reasoning = message.additional_kwargs.get("reasoning_content")
            if reasoning is not None:
                converted["reasoning_content"] = reasoning
        wire.append(converted)
    return wire


def assert_valid(messages: list[BaseMessage]) -> None:
    if not messages:
        return
    wire = to_wire(messages)
    validate_chat_request({"model": "kimi-k2-0905-preview", "messages": wire})
    validate_chat_request({"model": "kimi-k3", "messages": wire})


@st.composite
def corrupted_histories(draw: st.DrawFn) -> list[Any]:
    messages: list[Any] = []
    if draw(st.booleans()):
        messages.append(SystemMessage("system prompt", id="sys"))
    kinds = st.sampled_from(
        [
            "user",
            "user",
            "ai_text",
            "ai_calls",
            "ai_calls",
            "tool",
            "tool",
            "tool",
            "empty_ai",
            "empty_user",
            "errored",
            "unparsable",
        ]
    )
    for i in range(draw(st.integers(0, 30))):
        kind = draw(kinds)
        mid = f"m{i}"
        if kind == "user":
            messages.append(HumanMessage(f"user-text-{i}", id=mid))
        elif kind == "ai_text":
            extra = {"reasoning_content": f"why-{i}"} if draw(st.booleans()) else {}
            messages.append(AIMessage(f"assistant-text-{i}", id=mid, additional_kwargs=extra))
        elif kind in ("ai_calls", "errored"):
            ids = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True))
            calls = [{"id": c, "name": draw(st.sampled_from(NAMES)), "args": {}} for c in ids]
            meta = (
                {"finish_reason": draw(st.sampled_from(["error", "aborted"]))}
                if kind == "errored"
                else {}
            )
            text = draw(st.sampled_from(["", f"assistant-text-{i}"]))
            messages.append(
                AIMessage(
                    text,
                    tool_calls=calls,
                    id=mid,
                    response_metadata=meta,
                    additional_kwargs={"reasoning_content": f"plan-{i}"},
                )
            )
        elif kind == "tool":
            call_id = draw(st.sampled_from([*POOL, "orphan-id"]))
            messages.append(ToolMessage(f"tool-text-{i}", tool_call_id=call_id, id=mid))
        elif kind == "empty_ai":
            messages.append(AIMessage(draw(st.sampled_from(["", "  ", []])), id=mid))
        elif kind == "empty_user":
            messages.append(HumanMessage(draw(st.sampled_from(["", "\n"])), id=mid))
        else:
            raw = [{"id": f"u{i}", "type": "function", "function": {"name": "f", "arguments": "{"}}]
            messages.append(
                AIMessage(f"assistant-text-{i}", id=mid, additional_kwargs={"tool_calls": raw})
            )
    return messages


def _accounted_drops(report: PipelineReport) -> set[str]:
    """Every message id the report says was dropped (merged ids expanded)."""
    merged: dict[str, tuple[str, ...]] = {}
    for stage in (report.sanitize, report.pairing, report.pairing_after_limit):
        for merge in getattr(stage, "merged_user_messages", ()):
            merged[merge.into] = merge.merged
    dropped = set(report.sanitize.dropped_empty_messages)
    dropped |= set(report.pairing.dropped_duplicates) | set(report.pairing.dropped_orphans)
    dropped |= set(report.pairing.dropped_empty_assistants)
    after = report.pairing_after_limit
    if after is not None:
        dropped |= set(after.dropped_duplicates) | set(after.dropped_orphans)
        dropped |= set(after.dropped_empty_assistants)
    for ref in report.limit.dropped_messages:
        dropped.add(ref)
        dropped.update(merged.get(ref, ()))
    return dropped


def _texts(messages: list[BaseMessage]) -> str:
    return "\n".join(content_text(m.content) for m in messages)


def _dump(messages: list[BaseMessage]) -> list[str]:
    return [m.model_dump_json() for m in messages]


@SETTINGS
@given(
    history=corrupted_histories(),
    limit=st.sampled_from([None, 1, 2, 4]),
    hysteresis=st.integers(0, 2),
)
def test_output_always_passes_strict_validation_is_idempotent_and_loses_no_unreported_text(
    history: list[BaseMessage], limit: int | None, hysteresis: int
) -> None:
    policy = ContextPolicy(history_limit=limit, history_hysteresis=hysteresis)
    before = _dump(history)
    out, report = prepare_context(history, policy, token_counter=COUNTER)

    assert _dump(history) == before  # never mutated
    assert_valid(out)
    for name in ("sanitize", "pairing", "limit"):
        if getattr(report, name).changed:
            event(f"{name} changed something")
    if report.pairing.added_synthetic_results:
        event("synthetic results added")
    if report.pairing.moved_results or report.pairing.moved_messages:
        event("messages moved")

    again, second = prepare_context(out, policy, token_counter=COUNTER)
    assert again is out
    assert not second.changed
    # The output is a fixpoint of every stage on its own too (callers such as graph nodes
    # may run the stages one by one).
    assert sanitize_messages(out, policy)[0] is out
    assert repair_tool_pairing(out, policy)[0] is out
    assert limit_history_turns(out, policy)[0] is out

    dropped = _accounted_drops(report)
    output_text = _texts(out)
    out_ids = {m.id for m in out}
    for message in history:
        if isinstance(message, HumanMessage | AIMessage):
            text = content_text(message.content)
            if text.strip() and message.id not in dropped:
                assert text in output_text, (text, report)
        elif isinstance(message, ToolMessage) and message.id not in dropped:
            assert message.id in out_ids, (message.id, report)


@st.composite
def continuations(draw: st.DrawFn) -> list[list[BaseMessage]]:
    """Well-formed steps an agent appends between model calls (fresh tool-call ids)."""
    steps: list[list[BaseMessage]] = [[AIMessage("continuing", id="w-start")]]
    for i in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            steps.append(
                [HumanMessage(f"next-{i}", id=f"w-u{i}"), AIMessage(f"ans-{i}", id=f"w-a{i}")]
            )
        else:
            n = draw(st.integers(1, 3))
            calls = [{"id": f"w{i}_{k}", "name": "grep", "args": {}} for k in range(n)]
            step: list[BaseMessage] = [
                AIMessage(
                    "",
                    tool_calls=calls,
                    id=f"w-c{i}",
                    additional_kwargs={"reasoning_content": "r"},
                )
            ]
            step += [
                ToolMessage(f"res-{c['id']}", tool_call_id=c["id"], id=f"w-t{c['id']}")
                for c in calls
            ]
            steps.append(step)
    return steps


@SETTINGS
@given(
    history=corrupted_histories(),
    steps=continuations(),
    limit=st.sampled_from([None, 1, 2, 3]),
    hysteresis=st.integers(0, 3),
)
def test_appending_never_changes_the_earlier_output_except_at_reported_cut_events(
    history: list[BaseMessage],
    steps: list[list[BaseMessage]],
    limit: int | None,
    hysteresis: int,
) -> None:
    policy = ContextPolicy(history_limit=limit, history_hysteresis=hysteresis)
    current = list(history)
    previous, report = prepare_context(current, policy, token_counter=COUNTER)
    previous_cut = report.limit.user_turns_before - report.limit.user_turns_kept
    cut_turns: list[int] = []
    seen: list[tuple[list[BaseMessage], list[str], dict[str, Any]]] = []
    for step in steps:
        current = current + step
        out, report = prepare_context(current, policy, token_counter=COUNTER)
        seen.append((current, _dump(out), report.to_dict()))
        cut = report.limit.user_turns_before - report.limit.user_turns_kept
        if cut == previous_cut:
            assert _dump(out[: len(previous)]) == _dump(previous)
        else:
            assert report.limit.cut  # an explicit, reported cut event
            cut_turns.append(report.limit.user_turns_before)
        previous, previous_cut = out, cut
    event(f"cut events: {min(len(cut_turns), 3)}+")
    # The incremental memos (resume from the previous call's state) change nothing:
    # recompute every step from scratch (longest first, so none can resume) and compare.
    _reset_memos()
    for messages, dumped, report_dict in reversed(seen):
        fresh, fresh_report = prepare_context(messages, policy, token_counter=COUNTER)
        assert _dump(fresh) == dumped
        assert fresh_report.to_dict() == report_dict
    # Cut events are at least K + 1 user turns apart (the hysteresis window).
    assert all(b - a >= hysteresis + 1 for a, b in itertools.pairwise(cut_turns))
