"""Preflight guard: one test per behaviour of the reference notes, section 1."""

from __future__ import annotations

import json
import warnings

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_kimi_context import (
    ContextPolicy,
    ContextWindowTooSmallError,
    KimiContextOverflowError,
    get_profile,
    preflight_guard,
    prepare_context,
)
from langchain_kimi_context.context.guard import ContextWindowWarning, resolve_context_window
from langchain_kimi_context.tokens import ApproximateBackend, TokenCounter


@pytest.fixture
def counter() -> TokenCounter:
    return TokenCounter(backend=ApproximateBackend())


def _tool_turn(call_id: str, text: str) -> list:
    return [
        AIMessage("", tool_calls=[{"id": call_id, "name": "cat", "args": {}}]),
        ToolMessage(text, tool_call_id=call_id),
    ]


def test_hard_minimum_16000_refused_before_any_call_naming_window_source_and_fix() -> None:
    small = get_profile("moonshot-v1-8k")
    with pytest.raises(ContextWindowTooSmallError) as info:
        preflight_guard([HumanMessage("hi")], ContextPolicy(), profile=small)
    err = info.value
    assert (err.window, err.minimum) == (8_192, 16_000)
    assert err.source == "profile:moonshot-v1-8k (builtin)"
    text = str(err)
    assert "8192" in text
    assert "moonshot-v1-8k" in text
    assert "ContextPolicy(context_window=" in text  # the fix
    # prepare_context refuses too, before touching the messages.
    with pytest.raises(ContextWindowTooSmallError):
        prepare_context([object()], ContextPolicy(), profile=small)  # type: ignore[list-item]
    # Exactly the minimum is accepted.
    with pytest.warns(ContextWindowWarning):
        preflight_guard([HumanMessage("hi")], ContextPolicy(context_window=16_000))


def test_warn_below_32000() -> None:
    with pytest.warns(ContextWindowWarning, match="32768|below 32000"):
        _, report = preflight_guard([HumanMessage("hi")], ContextPolicy(context_window=20_000))
    assert report.warn
    assert report.warning
    assert "20000" in report.warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, report = preflight_guard([HumanMessage("hi")], ContextPolicy(context_window=32_000))
    assert not report.warn
    assert report.warning is None


def test_window_resolution_order_explicit_config_over_profile_over_default() -> None:
    profile = get_profile("kimi-k2-0711-preview")  # 131072
    policy = ContextPolicy(context_window=100_000, default_context_window=50_000)
    assert resolve_context_window(policy, profile).source == "policy.context_window"
    assert resolve_context_window(policy, profile).window == 100_000
    no_explicit = ContextPolicy(default_context_window=50_000)
    info = resolve_context_window(no_explicit, profile)
    assert (info.window, info.source) == (131_072, "profile:kimi-k2-0711-preview (builtin)")
    learned = resolve_context_window(no_explicit, 120_000)  # from /v1/models or an error
    assert (learned.window, learned.source) == (120_000, "learned")
    fallback = resolve_context_window(no_explicit, None)
    assert (fallback.window, fallback.source) == (50_000, "default")


def test_agent_cap_only_lowers_the_window_never_raises_it() -> None:
    profile = get_profile("kimi-k2.6")  # 262144
    lowered = resolve_context_window(ContextPolicy(agent_context_cap=64_000), profile)
    assert (lowered.window, lowered.source) == (64_000, "policy.agent_context_cap")
    assert (lowered.uncapped_window, lowered.uncapped_source) == (262_144, lowered.uncapped_source)
    raised = resolve_context_window(ContextPolicy(agent_context_cap=1_000_000), profile)
    assert raised.window == 262_144
    assert raised.source.startswith("profile:")
    # The cap also lowers an explicit window, and the guard blocks a cap that is too small.
    assert (
        resolve_context_window(
            ContextPolicy(context_window=200_000, agent_context_cap=90_000)
        ).window
        == 90_000
    )
    with pytest.raises(ContextWindowTooSmallError, match=r"policy\.agent_context_cap"):
        preflight_guard([HumanMessage("x")], ContextPolicy(agent_context_cap=10_000))


def test_window_zero_or_unknown_never_warns_or_blocks_by_itself() -> None:
    zero_profile = get_profile("kimi-k2.6").replace(context_window=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for policy, profile in [
            (ContextPolicy(context_window=0), None),
            (ContextPolicy(), zero_profile),
            (ContextPolicy(), 0),
            (ContextPolicy(agent_context_cap=0), None),
        ]:
            _, report = preflight_guard([HumanMessage("x")], policy, profile=profile)
            assert report.window == 262_144
            assert report.window_source == "default"
            assert not report.warn


def test_precheck_prompt_system_tools_plus_reserved_output_must_fit(counter: TokenCounter) -> None:
    system = SystemMessage("rules " * 300)
    history = [system, HumanMessage("question " * 100)]
    tool = {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web " * 20,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    policy = ContextPolicy(context_window=20_000, reserved_output_tokens=4_000)
    with pytest.warns(ContextWindowWarning):
        _, report = preflight_guard(history, policy, token_counter=counter, tools=[tool])
    assert report.message_tokens == counter.count_messages(history)
    assert report.system_tokens == counter.count_message(system)
    assert report.tool_schema_tokens == counter.count_tools([tool]) > 0
    assert report.estimated_tokens == report.message_tokens + report.tool_schema_tokens
    assert report.required_tokens == report.estimated_tokens + 4_000
    assert report.fits
    assert report.route == "none"
    assert report.overflow_tokens == 0
    # Shrinking the reserve headroom until it no longer fits flips the verdict exactly.
    tight = policy.replace(reserved_output_tokens=20_000 - report.estimated_tokens + 1)
    with pytest.warns(ContextWindowWarning):
        _, report = preflight_guard(history, tight, token_counter=counter, tools=[tool])
    assert not report.fits
    assert report.overflow_tokens == 1


def test_route_compact_only_when_no_tool_result_text_is_reducible(counter: TokenCounter) -> None:
    history = [HumanMessage("talk " * 30_000), AIMessage("ok")]
    with pytest.warns(ContextWindowWarning):
        _, report = preflight_guard(
            history, ContextPolicy(context_window=20_000), token_counter=counter
        )
    assert not report.fits
    assert report.reducible_tool_result_tokens == 0
    assert report.route == "compact"


def test_route_truncate_tool_results_only_when_truncation_frees_enough(
    counter: TokenCounter,
) -> None:
    history = [HumanMessage("read it"), *_tool_turn("c1", "line of a big file\n" * 8_000)]
    with pytest.warns(ContextWindowWarning):
        _, report = preflight_guard(
            history, ContextPolicy(context_window=20_000), token_counter=counter
        )
    assert not report.fits
    assert report.reducible_tool_result_tokens >= report.overflow_tokens
    assert report.route == "truncate_tool_results"


def test_route_compact_then_truncate_when_truncation_alone_is_not_enough(
    counter: TokenCounter,
) -> None:
    history = [
        HumanMessage("talk " * 30_000),
        *_tool_turn("c1", "tool output line\n" * 2_000),
    ]
    with pytest.warns(ContextWindowWarning):
        _, report = preflight_guard(
            history, ContextPolicy(context_window=20_000), token_counter=counter
        )
    assert 0 < report.reducible_tool_result_tokens < report.overflow_tokens
    assert report.route == "compact_then_truncate"


def test_already_truncated_results_are_not_counted_as_reducible(counter: TokenCounter) -> None:
    from langchain_kimi_context.context.markers import with_marker

    turn = _tool_turn("c1", "x\n" * 40_000)
    turn[1] = with_marker(turn[1], "truncated_tool_result")
    with pytest.warns(ContextWindowWarning):
        _, report = preflight_guard(
            [HumanMessage("q"), *turn], ContextPolicy(context_window=20_000), token_counter=counter
        )
    assert report.reducible_tool_result_tokens == 0
    assert report.route == "compact"


def test_past_90_percent_during_tool_loop_flags_overflow_to_raise(counter: TokenCounter) -> None:
    history = [HumanMessage("q"), *_tool_turn("c1", "data " * 60_000)]
    policy = ContextPolicy(context_window=100_000, reserved_output_tokens=0)
    _, report = preflight_guard(history, policy, token_counter=counter)
    assert report.tool_loop_limit == 90_000
    assert report.exceeds_tool_loop_limit == (report.required_tokens > 90_000)
    big = [HumanMessage("q"), *_tool_turn("c1", "data " * 500_000)]
    _, report = preflight_guard(big, policy, token_counter=counter)
    assert report.exceeds_tool_loop_limit
    err = report.overflow_error("kimi-k2.6")
    assert isinstance(err, KimiContextOverflowError)
    assert err.window == 100_000
    assert err.requested == report.required_tokens


def test_guard_returns_the_same_list_and_a_json_report(counter: TokenCounter) -> None:
    history = [HumanMessage("hello")]
    out, report = preflight_guard(history, ContextPolicy(), token_counter=counter)
    assert out is history
    assert json.loads(json.dumps(report.to_dict()))["window_source"] == "default"
