"""Tool-result truncation: one test per behaviour of the reference notes, section 5."""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from langchain_kimi_context import ContextPolicy, prepare_context, truncate_tool_results
from langchain_kimi_context.context.guard import ContextWindowWarning
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.truncation import per_result_cap_chars
from langchain_kimi_context.tokens import ApproximateBackend, TokenCounter

BIG = 262_144


def _turn(call_id: str, text: str, msg_id: str | None = None) -> list[BaseMessage]:
    return [
        AIMessage("", tool_calls=[{"id": call_id, "name": "cat", "args": {}}]),
        ToolMessage(text, tool_call_id=call_id, id=msg_id or f"t-{call_id}"),
    ]


def _lines(n: int, width: int = 50) -> str:
    return "\n".join(f"{i:06d} " + "a" * (width - 8) for i in range(n))


def _removed(text: str) -> int:
    match = re.search(r"(\d+) of (\d+) characters removed", text)
    assert match, text[-300:]
    return int(match.group(1))


def test_per_result_cap_is_min_of_30_percent_of_window_in_chars_and_40000() -> None:
    policy = ContextPolicy()
    assert per_result_cap_chars(policy, BIG) == 40_000  # 30% x 262144 x 4 > 40,000
    assert per_result_cap_chars(policy, 20_000) == 24_000  # 30% x 20000 x 4 < 40,000
    history = [HumanMessage("q"), *_turn("c1", _lines(1_000))]  # 50,000 chars
    _out, report = truncate_tool_results(history, policy, window=BIG)
    assert report.per_result_cap_chars == 40_000
    (item,) = report.truncated
    assert item.kept_chars <= 40_000
    assert item.original_chars == len(history[2].content)
    assert item.removed_chars == item.original_chars - item.kept_chars
    small, _ = truncate_tool_results([HumanMessage("q"), *_turn("c1", "x" * 39_999)], policy)
    assert small[2].content == "x" * 39_999


def test_keep_at_least_2000_chars() -> None:
    policy = ContextPolicy(tool_result_max_window_share=0.01)  # 1% of 16K x 4 = 640 chars
    assert per_result_cap_chars(policy, 16_000) == 2_000
    history = [HumanMessage("q"), *_turn("c1", _lines(200))]
    _, report = truncate_tool_results(history, policy, window=16_000)
    assert report.truncated[0].kept_chars >= 2_000 * 0.8  # newline-aware cut, within 20%
    # With a budget, trimming never goes below the minimum either.
    _, report = truncate_tool_results(history, ContextPolicy(), window=BIG, budget_chars=10)
    assert report.truncated[0].kept_chars >= 2_000 * 0.8


def test_cut_at_a_newline_when_one_is_in_the_last_20_percent() -> None:
    text = _lines(2_000)  # 50-char lines
    out, _report = truncate_tool_results([HumanMessage("q"), *_turn("c", text)], ContextPolicy())
    body = str(out[2].content).split("\n\n[...")[0]
    assert text.startswith(body)
    assert text[len(body)] == "\n"  # cut exactly at a line end
    assert 40_000 * 0.8 <= len(body) <= 40_000
    # No newline in the last 20%: a hard cut at the cap.
    flat = "y" * 60_000
    out, _ = truncate_tool_results([HumanMessage("q"), *_turn("c", flat)], ContextPolicy())
    assert str(out[2].content).split("\n\n[...")[0] == "y" * 40_000


@pytest.mark.parametrize(
    "tail",
    [
        "Traceback (most recent call last):\n  File x\nValueError: boom",
        "=== 3 failed, 120 passed in 2.1s ===\nSummary: see above",
        '{"items": [1, 2, 3]}',
    ],
    ids=["error", "summary", "closing-json"],
)
def test_head_and_tail_kept_when_the_tail_holds_error_summary_or_closing_json(tail: str) -> None:
    text = _lines(2_000) + "\n" + tail
    out, report = truncate_tool_results([HumanMessage("q"), *_turn("c", text)], ContextPolicy())
    content = str(out[2].content)
    assert report.truncated[0].mode == "head_tail"
    assert content.startswith(text[:1_000])
    assert content.endswith(tail)
    assert "characters removed from the middle" in content
    assert _removed(content) == report.truncated[0].removed_chars


def test_suffix_says_how_many_characters_were_cut() -> None:
    text = "plain words " * 5_000  # no cue in the tail
    out, report = truncate_tool_results([HumanMessage("q"), *_turn("c", text)], ContextPolicy())
    content = str(out[2].content)
    assert report.truncated[0].mode == "head"
    assert content.rstrip().endswith("...]")
    assert _removed(content) == len(text) - report.truncated[0].kept_chars
    assert f"of {len(text)} characters" in content


def test_several_results_over_the_budget_trim_the_newest_first() -> None:
    history = [HumanMessage("q")]
    for i in range(3):
        history += _turn(f"c{i}", _lines(200), f"t{i}")  # 10,000 chars each
    out, report = truncate_tool_results(history, ContextPolicy(), budget_chars=22_000)
    assert [t.message_id for t in report.truncated] == ["t2"]
    assert report.truncated[0].reason == "budget"
    assert out[2] is history[2]
    assert out[4] is history[4]
    # A tighter budget reaches the older ones only after the newest is at its minimum.
    out, report = truncate_tool_results(history, ContextPolicy(), budget_chars=14_000)
    assert [t.message_id for t in report.truncated] == ["t1", "t2"]
    assert all(t.kept_chars <= 2_000 for t in report.truncated)
    assert out[2] is history[2]
    total = sum(len(str(m.content)) for m in out if isinstance(m, ToolMessage))
    assert total <= 14_000 + 2 * 200  # markers on top of the kept text


def test_a_single_result_may_use_at_most_50_percent_of_the_window() -> None:
    policy = ContextPolicy(tool_result_max_window_share=0.9, tool_result_hard_max_chars=10**9)
    window = 20_000
    assert per_result_cap_chars(policy, window) == int(window * 0.5 * 4)
    history = [HumanMessage("q"), *_turn("c", "z\n" * 30_000)]
    _, report = truncate_tool_results(history, policy, window=window)
    assert report.truncated[0].kept_chars <= window * 0.5 * 4


def test_truncated_results_are_marked_and_never_truncated_again() -> None:
    history = [HumanMessage("q"), *_turn("c", _lines(2_000))]
    out, report = truncate_tool_results(history, ContextPolicy())
    marker = get_marker(out[2])
    assert marker is not None
    assert marker["kind"] == "truncated_tool_result"
    assert marker["removed_chars"] == report.truncated[0].removed_chars
    again, report2 = truncate_tool_results(out, ContextPolicy(tool_result_hard_max_chars=5_000))
    assert again is out
    assert report2.skipped_already_truncated == ("t-c",)
    assert history[2].content == _lines(2_000)  # the original is untouched


def test_prepare_context_truncates_when_the_guard_route_says_so() -> None:
    counter = TokenCounter(backend=ApproximateBackend())
    history = [HumanMessage("q", id="u"), *_turn("c1", _lines(3_000), "t1")]
    policy = ContextPolicy(context_window=20_000, reserved_output_tokens=1_000)
    with pytest.warns(ContextWindowWarning):
        _out, report = prepare_context(history, policy, token_counter=counter)
    assert report.truncation is not None
    assert [t.message_id for t in report.truncation.truncated] == ["t1"]
    assert report.guard.fits
    assert report.guard.route == "none"
    assert json.loads(json.dumps(report.to_dict()))["truncation"]["truncated"][0]["mode"] == "head"
    # "never" leaves results alone and reports the route for the caller.
    with pytest.warns(ContextWindowWarning):
        out2, report2 = prepare_context(
            history, policy.replace(tool_result_truncation="never"), token_counter=counter
        )
    assert out2 is history
    assert report2.truncation is None
    assert report2.guard.route == "truncate_tool_results"


def test_always_mode_applies_per_result_caps_on_every_call() -> None:
    history = [HumanMessage("q"), *_turn("c1", _lines(1_000), "t1")]
    out, report = prepare_context(history, ContextPolicy(tool_result_truncation="always"))
    assert report.truncation is not None
    assert report.truncation.truncated[0].reason == "per_result_cap"
    assert prepare_context(out, ContextPolicy(tool_result_truncation="always"))[0] is out
