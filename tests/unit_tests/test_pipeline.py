"""``prepare_context``: canonical order, combined report, purity, fast paths."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

import langchain_kimi_context as pkg
from langchain_kimi_context import ContextPolicy, get_profile, prepare_context
from langchain_kimi_context.tokens import ApproximateBackend, TokenCounter

COUNTER = TokenCounter(backend=ApproximateBackend())


def _call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "name": "read_file", "args": {"path": "a.py"}}


def _session(turns: int) -> list[BaseMessage]:
    messages: list[BaseMessage] = [SystemMessage("sys", id="s")]
    for i in range(turns):
        messages += [
            HumanMessage(f"q{i}", id=f"u{i}"),
            AIMessage(
                "",
                tool_calls=[_call(f"c{i}")],
                id=f"a{i}",
                additional_kwargs={"reasoning_content": f"plan {i}"},
            ),
            ToolMessage(f"r{i}", tool_call_id=f"c{i}", id=f"t{i}"),
            AIMessage(f"answer {i}", id=f"f{i}", additional_kwargs={"reasoning_content": "x"}),
        ]
    return messages


def test_public_names_are_exported_from_the_package() -> None:
    for name in (
        "ContextPolicy",
        "prepare_context",
        "preflight_guard",
        "sanitize_messages",
        "limit_history_turns",
        "repair_tool_pairing",
        "truncate_tool_results",
        "ContextWindowTooSmallError",
        "PipelineReport",
        "GuardReport",
        "SanitizeReport",
        "LimitReport",
        "PairingReport",
        "TruncationReport",
    ):
        assert name in pkg.__all__
        assert getattr(pkg, name) is not None
    assert pkg.__all__ == sorted(pkg.__all__)


def test_clean_history_comes_back_as_the_same_list_with_an_unchanged_report() -> None:
    history = _session(3)
    history = [m for m in history if "reasoning_content" not in m.additional_kwargs or m.tool_calls]  # type: ignore[attr-defined]
    out, report = prepare_context(history, ContextPolicy(), token_counter=COUNTER)
    assert out is history
    assert not report.changed
    assert (report.input_messages, report.output_messages) == (len(history), len(history))
    assert report.truncation is None
    assert report.pairing_after_limit is None


def test_canonical_order_sanitize_repair_limit_repair_and_one_combined_report() -> None:
    history = [
        SystemMessage("sys", id="s"),
        AIMessage("resumed answer", id="a-head"),  # needs a bootstrap turn
        HumanMessage("q0", id="u0"),
        AIMessage(
            "", tool_calls=[_call("c0"), {"id": "c-bad", "name": "bad name", "args": {}}], id="a0"
        ),
        HumanMessage("inside the span", id="u1"),
        ToolMessage("r0", tool_call_id="c0", id="t0"),
        ToolMessage("r0 again", tool_call_id="c0", id="t0-dup"),
        AIMessage("done", id="a0b"),
        HumanMessage("q2", id="u2"),
        AIMessage("", tool_calls=[_call("c2")], id="a2"),
    ]
    out, report = prepare_context(
        history, ContextPolicy(history_limit=2), token_counter=COUNTER, session_key="web:chat:x"
    )
    assert [m.id for m in out] == ["s", "u1", "a0b", "u2", "a2", "a2:synthetic-result:c2"]
    assert report.sanitize.bootstrap_added == "kimi-context-bootstrap"
    assert [d.reason for d in report.sanitize.dropped_tool_calls] == ["bad_name"]
    assert report.pairing.dropped_duplicates == ("t0-dup",)
    assert report.pairing.moved_messages == ("u1",)
    assert [s.tool_call_id for s in report.pairing.added_synthetic_results] == ["c2"]
    assert report.limit.dropped_messages == ("kimi-context-bootstrap", "a-head", "u0", "a0", "t0")
    assert report.limit.limit_source == "policy.history_limit"
    assert report.pairing_after_limit is not None
    assert report.changed
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) == {
        "guard",
        "sanitize",
        "pairing",
        "limit",
        "pairing_after_limit",
        "truncation",
        "input_messages",
        "output_messages",
        "changed",
    }


def test_original_messages_are_never_mutated() -> None:
    history = _session(4)
    history.insert(3, HumanMessage("interleaved", id="ux"))
    history.append(ToolMessage("orphan", tool_call_id="nope", id="orphan"))
    before = [m.model_dump_json() for m in history]
    snapshot = list(history)
    prepare_context(history, ContextPolicy(history_limit=2), profile=get_profile("kimi-k2.6"))
    assert [m.model_dump_json() for m in history] == before
    assert all(a is b for a, b in zip(history, snapshot, strict=True))


def test_rewritten_messages_are_stable_objects_across_calls() -> None:
    # Stripping reasoning from final answers rewrites them; the copies are memoised per
    # original object, so the next call hands the token counter the same objects.
    history = _session(3)
    first, report = prepare_context(history, ContextPolicy(), token_counter=COUNTER)
    assert report.sanitize.stripped_reasoning == ("f0", "f1", "f2")
    second, _ = prepare_context(
        [*history, HumanMessage("more")], ContextPolicy(), token_counter=COUNTER
    )
    assert all(a is b for a, b in zip(first, second, strict=False))


def test_reasoning_is_kept_on_tool_call_turns_for_thinking_models_end_to_end() -> None:
    out, _ = prepare_context(_session(2), ContextPolicy(), profile=get_profile("kimi-k3"))
    calls = [m for m in out if isinstance(m, AIMessage) and m.tool_calls]
    assert all(m.additional_kwargs.get("reasoning_content") for m in calls)
    finals = [m for m in out if isinstance(m, AIMessage) and not m.tool_calls]
    assert not any("reasoning_content" in m.additional_kwargs for m in finals)


def test_session_key_picks_the_limit_by_kind() -> None:
    policy = ContextPolicy(dm_history_limit=1, channel_history_limit=3)
    out, report = prepare_context(_session(5), policy, session_key="agent:a:tg:dm:42")
    assert report.limit.session_kind == "dm"
    assert [m.id for m in out if isinstance(m, HumanMessage)] == ["u4"]
    out, report = prepare_context(_session(5), policy, session_key="tg:group:g:topic:1")
    assert [m.id for m in out if isinstance(m, HumanMessage)] == ["u2", "u3", "u4"]


def test_learned_window_int_profile_is_used_by_the_guard() -> None:
    _, report = prepare_context([HumanMessage("hi")], ContextPolicy(), profile=131_072)
    assert (report.guard.window, report.guard.window_source) == (131_072, "learned")


def test_interleaved_sessions_sharing_a_system_prompt_object_get_their_own_results() -> None:
    from langchain_kimi_context.context.pipeline import _reset_memos

    system = SystemMessage("shared prompt", id="s")
    a = [system, HumanMessage("alice 1", id="a1"), AIMessage("hi alice", id="a2")]
    b = [system, HumanMessage("bob 1", id="b1"), HumanMessage("bob 2", id="b2")]
    policy = ContextPolicy()
    results = []
    for step in range(3):
        a = [*a, HumanMessage(f"alice {step}", id=f"ax{step}"), AIMessage("ok", id=f"ay{step}")]
        b = [*b, AIMessage(f"to bob {step}", id=f"bx{step}"), HumanMessage("more", id=f"by{step}")]
        results.append((list(a), prepare_context(a, policy)[0]))
        results.append((list(b), prepare_context(b, policy)[0]))
    _reset_memos()
    for history, warm in reversed(results):
        fresh = prepare_context(history, policy)[0]
        assert [m.model_dump_json() for m in fresh] == [m.model_dump_json() for m in warm]
    assert results[1][1][1].content == "bob 1\n\nbob 2"
