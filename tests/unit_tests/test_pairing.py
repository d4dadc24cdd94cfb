"""Pairing repair: one test per behaviour of the reference notes, section 3 step 5."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_openai.chat_models.base import _convert_message_to_dict

from langchain_kimi_context import ContextPolicy, prepare_context, repair_tool_pairing
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.testing import EmulatorAPIError, validate_chat_request

POLICY = ContextPolicy()


def _call(call_id: str, name: str = "read_file") -> dict[str, Any]:
    return {"id": call_id, "name": name, "args": {"path": f"{call_id}.py"}}


def _ai(*ids: str, msg_id: str | None = None, **kwargs: Any) -> AIMessage:
    return AIMessage("", tool_calls=[_call(i) for i in ids], id=msg_id, **kwargs)


def _tool(call_id: str, msg_id: str | None = None, text: str | None = None) -> ToolMessage:
    return ToolMessage(text or f"result of {call_id}", tool_call_id=call_id, id=msg_id)


def _ids(messages: Any) -> list[str | None]:
    return [m.id for m in messages]


def _validate(messages: Any) -> None:
    wire = []
    for message in messages:
        converted = _convert_message_to_dict(message)
        if converted.get("tool_calls") and not converted.get("content"):
            converted.pop("content", None)
        wire.append(converted)
    validate_chat_request({"model": "kimi-k2-0905-preview", "messages": wire})


def test_orphan_tool_result_outside_any_call_span_is_dropped() -> None:
    history = [
        _tool("ghost", "t-before"),
        HumanMessage("q", id="u1"),
        AIMessage("plain answer", id="a1"),
        _tool("ghost2", "t-after-plain"),
    ]
    with pytest.raises(EmulatorAPIError, match="is not found"):
        _validate(history)
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a1"]
    assert report.dropped_orphans == ("t-before", "t-after-plain")
    _validate(out)


def test_results_gathered_up_to_next_assistant_first_wins_later_duplicates_dropped() -> None:
    history = [
        HumanMessage("q", id="u1"),
        _ai("c1", msg_id="a1"),
        _tool("c1", "t1", "first"),
        _tool("c1", "t1-dup", "second"),
        AIMessage("done", id="a2"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a1", "t1", "a2"]
    assert out[2].content == "first"
    assert report.dropped_duplicates == ("t1-dup",)


def test_duplicate_of_an_id_answered_earlier_in_the_transcript_is_dropped() -> None:
    history = [
        HumanMessage("q", id="u1"),
        _ai("c1", msg_id="a1"),
        _tool("c1", "t1"),
        AIMessage("done", id="a2"),
        HumanMessage("again?", id="u2"),
        _tool("c1", "t1-late-dup"),  # a replayed result for an id already answered
        AIMessage("ok", id="a3"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a1", "t1", "a2", "u2", "a3"]
    assert report.dropped_duplicates == ("t1-late-dup",)


def test_reused_tool_call_id_pairs_with_the_nearest_preceding_call_not_a_global_map() -> None:
    # Some hosts restart ids per turn ("call_0" every time): a later result for the same
    # id answers the later call; it is not a duplicate of the first.
    history = [
        HumanMessage("q1", id="u1"),
        _ai("call_0", msg_id="a1"),
        _tool("call_0", "t1", "first turn"),
        AIMessage("done 1", id="a1b"),
        HumanMessage("q2", id="u2"),
        _ai("call_0", msg_id="a2"),
        _tool("call_0", "t2", "second turn"),
        _tool("call_0", "t2-dup", "second turn again"),
        AIMessage("done 2", id="a2b"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a1", "t1", "a1b", "u2", "a2", "t2", "a2b"]
    assert report.dropped_duplicates == ("t2-dup",)
    assert not report.added_synthetic_results


def test_misplaced_result_is_moved_after_its_call() -> None:
    history = [
        HumanMessage("q", id="u1"),
        _tool("c2", "t2-early"),  # written before its call
        _ai("c1", "c2", msg_id="a1"),
        AIMessage("interim", id="a-mid"),
        _tool("c1", "t1-late"),  # written after the next assistant message
        HumanMessage("next", id="u2"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a1", "t1-late", "t2-early", "a-mid", "u2"]
    assert report.moved_results == ("t2-early", "t1-late")
    assert not report.dropped_orphans
    _validate(out)


def test_other_messages_found_inside_a_span_move_after_the_results() -> None:
    history = [
        HumanMessage("q", id="u1"),
        _ai("c1", "c2", msg_id="a1"),
        _tool("c1", "t1"),
        HumanMessage("are you done?", id="u-inside"),
        SystemMessage("note", id="s-inside"),
        _tool("c2", "t2"),
        AIMessage("done", id="a2"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a1", "t1", "t2", "u-inside", "s-inside", "a2"]
    assert report.moved_messages == ("u-inside", "s-inside")
    _validate(out)


def test_missing_result_gets_a_synthetic_error_result_in_tool_call_order() -> None:
    history = [
        HumanMessage("q", id="u1"),
        _ai("c1", "c2", "c3", msg_id="a1"),
        _tool("c2", "t2"),
        HumanMessage("next", id="u2"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert [getattr(m, "tool_call_id", None) for m in out[2:5]] == ["c1", "c2", "c3"]
    synthetic = [out[2], out[4]]
    for message in synthetic:
        assert isinstance(message, ToolMessage)
        assert message.status == "error"
        assert "missing" in str(message.content)
        assert "inserted by transcript repair" in str(message.content)
        assert get_marker(message)["kind"] == "synthetic_tool_result"  # type: ignore[index]
    assert [(s.tool_call_id, s.assistant_id) for s in report.added_synthetic_results] == [
        ("c1", "a1"),
        ("c3", "a1"),
    ]
    _validate(out)


def test_errored_or_aborted_turn_gets_no_synthetic_results() -> None:
    history = [
        HumanMessage("q", id="u1"),
        AIMessage(
            "partial thought",
            tool_calls=[_call("c1"), _call("c2")],
            id="a-err",
            response_metadata={"finish_reason": "error"},
        ),
        _tool("c1", "t1"),
        HumanMessage("retry", id="u2"),
        _ai("c3", msg_id="a-abort", response_metadata={"finish_reason": "aborted"}),
        HumanMessage("again", id="u3"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert not report.added_synthetic_results
    assert report.errored_turns == ("a-err", "a-abort")
    # Unanswered calls are removed from the errored turn; an empty one is dropped (and
    # the user messages it separated are merged, as sanitize would).
    assert _ids(out) == ["u1", "a-err", "t1", "u3"]
    assert [c["id"] for c in out[1].tool_calls] == ["c1"]
    assert [d.tool_call_id for d in report.stripped_unanswered_calls] == ["c2", "c3"]
    assert report.dropped_empty_assistants == ("a-abort",)
    assert out[3].content == "retry\n\nagain"
    assert report.merged_user_messages[0].merged == ("u2", "u3")
    _validate(out)
    # The convention is a policy field.
    custom = ContextPolicy(errored_finish_reasons=frozenset({"cancelled"}))
    _out2, report2 = repair_tool_pairing(history, custom)
    assert len(report2.added_synthetic_results) == 2


def test_errored_turn_left_without_calls_keeps_its_text_but_not_its_reasoning() -> None:
    history = [
        HumanMessage("q", id="u1"),
        AIMessage(
            "I started but the stream broke",
            tool_calls=[_call("c1")],
            id="a-err",
            response_metadata={"finish_reason": "error"},
            additional_kwargs={"reasoning_content": "plan"},
        ),
        HumanMessage("go on", id="u2"),
    ]
    out, report = repair_tool_pairing(history, POLICY)
    assert _ids(out) == ["u1", "a-err", "u2"]
    assert out[1].content == "I started but the stream broke"
    assert not out[1].tool_calls
    assert "reasoning_content" not in out[1].additional_kwargs
    assert not report.added_synthetic_results
    _validate(out)


def test_report_lists_added_dropped_duplicates_dropped_orphans_and_moved() -> None:
    history = [
        _tool("zz", "orphan"),
        HumanMessage("q", id="u1"),
        _ai("c1", "c2", msg_id="a1"),
        HumanMessage("inside", id="u-in"),
        _tool("c1", "t1"),
        _tool("c1", "dup"),
    ]
    _, report = repair_tool_pairing(history, POLICY)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["dropped_orphans"] == ["orphan"]
    assert data["dropped_duplicates"] == ["dup"]
    assert data["moved_messages"] == ["u-in"]
    assert data["added_synthetic_results"] == [
        {"tool_call_id": "c2", "assistant_id": "a1", "message_id": "a1:synthetic-result:c2"}
    ]
    assert report.changed


def test_tool_call_ids_are_never_rekeyed() -> None:
    odd_ids = ["functions.read_file:0", "call_ABC", "x" * 40]
    history = [
        HumanMessage("q"),
        _ai(*odd_ids),
        _tool(odd_ids[2]),
        _tool(odd_ids[0]),
        _tool(odd_ids[0]),
    ]
    out, _ = repair_tool_pairing(history, POLICY)
    assert [c["id"] for c in out[1].tool_calls] == odd_ids
    assert [m.tool_call_id for m in out[2:]] == odd_ids


def test_every_step_is_idempotent_running_twice_changes_nothing() -> None:
    history = [
        SystemMessage("s"),
        AIMessage("hello"),
        _tool("zz"),
        HumanMessage("a"),
        HumanMessage("b"),
        _ai("c1", "c2"),
        HumanMessage("inside"),
        _tool("c2"),
        _tool("c2"),
        AIMessage(""),
    ]
    once, first = prepare_context(history, POLICY)
    twice, second = prepare_context(once, POLICY)
    assert first.changed
    assert twice is once
    assert not second.changed
    assert not (second.sanitize.changed)
    assert not (second.pairing.changed)
    assert not (second.limit.changed)


def test_langchain_summarization_mixed_orphan_tool_run_is_repaired_issue_38352() -> None:
    # The kept window after a summarization cut: a run of tool results where one
    # answers a call that was summarised away and one answers a surviving call.
    summary = HumanMessage("Summary of the conversation so far", id="summary")
    kept: list[BaseMessage] = [
        summary,
        _ai("c-new", msg_id="a-kept"),
        _tool("c-old", "t-old"),
        _tool("c-new", "t-new"),
        AIMessage("answer", id="a-final"),
    ]
    with pytest.raises(EmulatorAPIError):
        _validate(kept)
    out, report = prepare_context(kept, POLICY)
    assert _ids(out) == ["summary", "a-kept", "t-new", "a-final"]
    assert report.pairing.dropped_orphans == ("t-old",)
    _validate(out)


def test_trim_messages_output_starting_on_a_tool_message_is_repaired_issue_33245() -> None:
    history = [
        SystemMessage("s"),
        HumanMessage("q " * 50),
        _ai("c1"),
        _tool("c1", text="r " * 400),
        _tool("c1b", text="x"),
        AIMessage("answer " * 20),
    ]
    history[2] = _ai("c1", "c1b")
    trimmed = trim_messages(
        history,
        max_tokens=count_tokens_approximately(history[3:]),
        token_counter=count_tokens_approximately,
        strategy="last",
    )
    assert isinstance(trimmed[0], ToolMessage)  # LangChain's output starts on a result
    out, report = prepare_context(trimmed, POLICY)
    assert not any(isinstance(m, ToolMessage) for m in out)
    assert len(report.pairing.dropped_orphans) == 2
    _validate(out)


def test_parallel_tool_results_are_all_kept_unlike_langmem_issue_112() -> None:
    ids = [f"p{i}" for i in range(6)]
    history = [HumanMessage("fan out", id="u1"), _ai(*ids, msg_id="a1")]
    history += [_tool(i, f"t-{i}") for i in reversed(ids)]  # completed in any order
    history.append(AIMessage("merged", id="a2"))
    out, report = prepare_context(history, POLICY)
    results = [m for m in out if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in results] == ids  # all kept, in call order
    assert not report.pairing.dropped_duplicates
    assert not report.pairing.added_synthetic_results
    _validate(out)


def test_clean_history_is_returned_as_is() -> None:
    history = [HumanMessage("q"), _ai("c1", "c2"), _tool("c1"), _tool("c2"), AIMessage("ok")]
    out, report = repair_tool_pairing(history, POLICY)
    assert out is history
    assert not report.changed


def test_messages_without_ids_are_named_by_their_input_position() -> None:
    history = [ToolMessage("stray", tool_call_id="zz"), HumanMessage("q"), _ai("c1")]
    out, report = repair_tool_pairing(history, POLICY)
    assert report.dropped_orphans == ("@0",)
    assert report.added_synthetic_results[0].assistant_id == "@2"
    assert out[-1].id == "@2:synthetic-result:c1"
