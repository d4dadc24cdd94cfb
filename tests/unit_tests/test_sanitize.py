"""Sanitize: one test per behaviour of the reference notes, section 3 steps 1-3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_openai.chat_models.base import _convert_message_to_dict

from langchain_kimi_context import ContextPolicy, get_profile, sanitize_messages
from langchain_kimi_context.context.markers import get_marker, is_marked, with_marker
from langchain_kimi_context.context.sanitize import BOOTSTRAP_MESSAGE_ID


def _ai(*calls: dict[str, Any], content: str = "", **kwargs: Any) -> AIMessage:
    return AIMessage(content, tool_calls=list(calls), **kwargs)


def _call(call_id: str | None = "c1", name: str | None = "read_file", args: Any = None) -> Any:
    return {"id": call_id, "name": name, "args": {} if args is None else args}


def _dropped(history: list[BaseMessage], policy: ContextPolicy | None = None) -> list[str]:
    _, report = sanitize_messages(history, policy or ContextPolicy())
    return [d.reason for d in report.dropped_tool_calls]


def _frozen(messages: list[BaseMessage]) -> list[str]:
    return [m.model_dump_json() for m in messages]


def test_drop_malformed_stored_records_never_fails_the_whole_load() -> None:
    history: list[Any] = [
        HumanMessage("hi", id="u1"),
        {"role": "assistant", "content": "converted from a stored dict"},
        {"role": "nonsense-role", "content": "x"},
        12345,
        RemoveMessage(id="u1"),
        HumanMessage("still here", id="u2"),
    ]
    out, report = sanitize_messages(history, ContextPolicy())
    assert [type(m).__name__ for m in out] == ["HumanMessage", "AIMessage", "HumanMessage"]
    assert out[1].content == "converted from a stored dict"
    assert [r.split(":")[0] for r in report.dropped_malformed] == ["@2", "@3", "@4"]
    assert history[3] == 12345  # the stored list (the backup) is untouched


def test_sanitize_drops_tool_calls_with_no_arguments() -> None:
    bad = _call("c2")
    bad["args"] = None
    history = [HumanMessage("q"), _ai(_call("c1"), content="x")]
    history[1] = history[1].model_copy(update={"tool_calls": [_call("c1"), bad]})
    out, report = sanitize_messages(history, ContextPolicy())
    assert [d.reason for d in report.dropped_tool_calls] == ["missing_args"]
    assert [c["id"] for c in out[1].tool_calls] == ["c1"]


def test_sanitize_drops_tool_calls_with_blank_or_missing_id() -> None:
    history = [HumanMessage("q"), _ai(_call("c1"), content="x")]
    history[1] = history[1].model_copy(
        update={"tool_calls": [_call("c1"), _call(None), _call("   ")]}
    )
    assert _dropped(history) == ["missing_id", "missing_id"]


def test_sanitize_drops_tool_calls_with_blank_name() -> None:
    history = [HumanMessage("q"), _ai(_call("c1", "read_file"), _call("c2", "  "), content="x")]
    assert _dropped(history) == ["blank_name"]


def test_sanitize_drops_tool_calls_with_name_longer_than_64_chars() -> None:
    history = [
        HumanMessage("q"),
        _ai(_call("c1", "a" * 64), _call("c2", "a" * 65), content="x"),
    ]
    assert _dropped(history) == ["name_too_long"]


def test_sanitize_drops_tool_calls_with_name_outside_allowed_characters() -> None:
    names = ["ok_name", "ns:tool.v1-2", "bad name", "bad/name", "bäd", "$web_search"]
    history = [
        HumanMessage("q"),
        _ai(*[_call(f"c{i}", n) for i, n in enumerate(names)], content="x"),
    ]
    out, report = sanitize_messages(history, ContextPolicy())
    assert [d.name for d in report.dropped_tool_calls] == ["bad name", "bad/name", "bäd"]
    # Kimi's builtin $web_search is exempt from the character rule.
    assert [c["name"] for c in out[1].tool_calls] == ["ok_name", "ns:tool.v1-2", "$web_search"]


def test_sanitize_drops_tool_calls_not_in_the_allowed_tool_set() -> None:
    history = [HumanMessage("q"), _ai(_call("c1", "read_file"), _call("c2", "rm_rf"), content="x")]
    policy = ContextPolicy(allowed_tool_names=frozenset({"read_file"}))
    assert _dropped(history, policy) == ["unknown_tool"]
    assert _dropped(history) == []  # no allowed set: any valid name is kept


def test_sanitize_drops_langchain_invalid_tool_calls_that_openai_would_send() -> None:
    broken = AIMessage(
        "let me look",
        additional_kwargs={
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{bad"}}
            ]
        },
    )
    assert broken.invalid_tool_calls
    assert not broken.tool_calls
    assert _convert_message_to_dict(broken)["tool_calls"]  # what langchain-openai would send
    out, report = sanitize_messages([HumanMessage("q"), broken], ContextPolicy())
    assert [d.reason for d in report.dropped_tool_calls] == ["invalid_tool_call"]
    wire = _convert_message_to_dict(out[1])
    assert "tool_calls" not in wire
    assert wire["content"] == "let me look"
    # A checkpoint round trip re-validates the message: the raw calls must be gone too.
    assert not AIMessage(**out[1].model_dump()).invalid_tool_calls


def test_sanitize_drops_repeated_tool_call_ids_within_one_message() -> None:
    history = [HumanMessage("q"), _ai(_call("c1"), _call("c1"), content="x")]
    assert _dropped(history) == ["duplicate_id"]


def test_drop_assistant_messages_left_empty() -> None:
    history = [
        HumanMessage("q", id="u1"),
        _ai(_call("c1", "bad name"), id="a1"),  # empty once the bad call is dropped
        AIMessage("   ", id="a2"),
        AIMessage([], id="a3"),
        AIMessage([{"type": "text", "text": ""}], id="a4"),
        AIMessage("real answer", id="a5"),
        HumanMessage("", id="u2"),
        SystemMessage("  ", id="s2"),
    ]
    out, report = sanitize_messages(history, ContextPolicy())
    assert [m.id for m in out] == ["u1", "a5"]
    assert report.dropped_empty_messages == ("a1", "a2", "a3", "a4", "u2", "s2")


def test_tool_results_are_never_dropped_for_being_empty() -> None:
    history = [HumanMessage("q"), _ai(_call("c1")), ToolMessage("", tool_call_id="c1")]
    out, report = sanitize_messages(history, ContextPolicy())
    assert out is history
    assert not report.changed


def test_blank_list_content_on_tool_call_message_becomes_empty_string() -> None:
    msg = AIMessage(
        [{"type": "text", "text": ""}],
        tool_calls=[_call("c1")],
        id="a1",
    )
    out, report = sanitize_messages([HumanMessage("q"), msg], ContextPolicy())
    assert out[1].content == ""
    assert report.normalized_content == ("a1",)


def test_strip_per_result_debug_details() -> None:
    result = ToolMessage(
        "42",
        tool_call_id="c1",
        id="t1",
        additional_kwargs={"debug": {"huge": "x" * 1000}, "keep": 1},
        response_metadata={"trace": [1, 2, 3], "model": "m"},
        artifact={"raw": b"...", "rows": 3},
    )
    history = [HumanMessage("q"), _ai(_call("c1")), result]
    out, report = sanitize_messages(history, ContextPolicy())
    cleaned = out[2]
    assert report.stripped_debug_payloads == ("t1",)
    assert cleaned.additional_kwargs == {"keep": 1}
    assert cleaned.response_metadata == {"model": "m"}
    assert cleaned.artifact == {"rows": 3}
    assert "debug" in result.additional_kwargs  # original untouched


def test_merge_consecutive_user_messages_newest_metadata_wins() -> None:
    history = [
        SystemMessage("s", id="s"),
        HumanMessage("first", id="u1", name="alice", additional_kwargs={"lang": "en"}),
        HumanMessage("second", id="u2", name="bob", additional_kwargs={"lang": "fr"}),
        HumanMessage(
            [{"type": "text", "text": "third"}], id="u3", name="carol", additional_kwargs={"x": 1}
        ),
        AIMessage("answer", id="a1"),
    ]
    out, report = sanitize_messages(history, ContextPolicy())
    merged = out[1]
    assert [m.id for m in out] == ["s", "u3", "a1"]
    assert merged.name == "carol"
    assert merged.id == "u3"
    assert {k: v for k, v in merged.additional_kwargs.items() if k != "kimi_context"} == {"x": 1}
    assert [b["text"] for b in merged.content] == ["first", "second", "third"]  # type: ignore[index]
    assert get_marker(merged) == {"kind": "merged_user", "merged": ["u1", "u2", "u3"]}
    assert report.merged_user_messages[0].merged == ("u1", "u2", "u3")
    # Idempotent: merging again changes nothing.
    again, report2 = sanitize_messages(out, ContextPolicy())
    assert again is out
    assert not report2.changed


def test_never_merge_assistant_messages() -> None:
    history = [HumanMessage("q"), AIMessage("one", id="a1"), AIMessage("two", id="a2")]
    out, report = sanitize_messages(history, ContextPolicy())
    assert out is history
    assert not report.changed


def test_summaries_are_never_merged_with_user_messages() -> None:
    summary = with_marker(HumanMessage("summary of earlier work", id="sum"), "summary")
    history = [SystemMessage("s"), summary, HumanMessage("next question", id="u1")]
    out, _ = sanitize_messages(history, ContextPolicy())
    assert out is history


def test_bootstrap_user_turn_when_history_starts_with_an_assistant() -> None:
    history = [
        SystemMessage("s", id="s"),
        ToolMessage("orphan", tool_call_id="x", id="t0"),
        AIMessage("I was saying...", id="a1"),
        HumanMessage("go on", id="u1"),
    ]
    out, report = sanitize_messages(history, ContextPolicy(bootstrap_user_text="(resumed)"))
    assert [m.id for m in out] == ["s", BOOTSTRAP_MESSAGE_ID, "t0", "a1", "u1"]
    assert out[1].content == "(resumed)"
    assert is_marked(out[1], "bootstrap")
    assert report.bootstrap_added == BOOTSTRAP_MESSAGE_ID
    assert sanitize_messages(out, ContextPolicy())[0] is out  # idempotent
    # A history starting with a user message or a summary needs none.
    summary = with_marker(HumanMessage("summary"), "summary")
    assert sanitize_messages([summary, AIMessage("a")], ContextPolicy())[1].bootstrap_added is None


def test_strip_old_reasoning_content_but_keep_it_on_tool_call_turns_for_thinking_models() -> None:
    history = [
        HumanMessage("q"),
        _ai(_call("c1"), id="a1", additional_kwargs={"reasoning_content": "plan"}),
        ToolMessage("r", tool_call_id="c1"),
        AIMessage("done", id="a2", additional_kwargs={"reasoning_content": "think"}),
    ]
    thinking = get_profile("kimi-k3")
    out, report = sanitize_messages(history, ContextPolicy(), profile=thinking)
    assert out[1].additional_kwargs["reasoning_content"] == "plan"
    assert "reasoning_content" not in out[3].additional_kwargs
    assert report.stripped_reasoning == ("a2",)
    # Unknown profile: the safe choice is to keep it on tool-call turns as well.
    out, _ = sanitize_messages(history, ContextPolicy())
    assert out[1].additional_kwargs["reasoning_content"] == "plan"


def test_strip_reasoning_everywhere_when_the_model_does_not_think() -> None:
    history = [
        HumanMessage("q"),
        _ai(_call("c1"), id="a1", additional_kwargs={"reasoning_content": "plan"}),
        ToolMessage("r", tool_call_id="c1"),
    ]
    out, report = sanitize_messages(
        history, ContextPolicy(), profile=get_profile("kimi-k2-0905-preview")
    )
    assert "reasoning_content" not in out[1].additional_kwargs
    assert report.stripped_reasoning == ("a1",)
    kept, _ = sanitize_messages(history, ContextPolicy(strip_old_reasoning=False))
    assert kept is history


def test_sanitize_never_mutates_the_input_and_reports_are_json() -> None:
    history = [
        HumanMessage("a", id="u1"),
        HumanMessage("b", id="u2"),
        _ai(
            _call("c1", "bad name"),
            _call("c2"),
            content="x",
            id="a1",
            additional_kwargs={"reasoning_content": "r"},
        ),
        ToolMessage("r", tool_call_id="c2", additional_kwargs={"debug": 1}),
    ]
    before = _frozen(history)
    _, report = sanitize_messages(history, ContextPolicy())
    assert _frozen(history) == before
    assert json.loads(json.dumps(report.to_dict()))["dropped_tool_calls"][0]["reason"] == "bad_name"


@pytest.mark.parametrize("merge", [True, False])
def test_merge_switch(merge: bool) -> None:
    history = [HumanMessage("a"), HumanMessage("b")]
    out, _ = sanitize_messages(history, ContextPolicy(merge_consecutive_user_messages=merge))
    assert len(out) == (1 if merge else 2)
