"""Property tests: whatever the session shape, compaction yields a valid, rebuildable view."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_kimi_context.context.compaction import apply_compactions, compact
from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.context.policy import ContextPolicy
from tests.compaction_helpers import SUMMARY, RecordingModel

turn_shape = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["read_file", "grep", "cat"])),
    min_size=1,
    max_size=9,
)


def build(shape: list[tuple[int, str]], sizes: list[int]) -> list[BaseMessage]:
    log: list[BaseMessage] = [SystemMessage("sys", id="sys")]
    for t, (calls, tool) in enumerate(shape):
        size = sizes[t % len(sizes)]
        log.append(HumanMessage(f"turn {t} " + "w " * size, id=f"h{t}"))
        for s in range(calls):
            cid = f"c{t}_{s}"
            log.append(
                AIMessage(
                    "",
                    id=f"a{t}_{s}",
                    tool_calls=[{"name": tool, "args": {"path": f"f{s % 2}.py"}, "id": cid}],
                )
            )
            log.append(ToolMessage("x = 1\n" * size, tool_call_id=cid, name=tool, id=f"t{t}_{s}"))
        log.append(AIMessage(f"done {t} " + "v " * size, id=f"f{t}"))
    return log


def assert_valid(view: list[BaseMessage]) -> None:
    open_calls: dict[str, bool] = {}
    for message in view:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                open_calls[call["id"]] = False
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in open_calls, "tool result without its call"
            open_calls[message.tool_call_id] = True
    assert all(open_calls.values()), "tool call without its result"
    first = next(m for m in view if not isinstance(m, SystemMessage))
    assert isinstance(first, HumanMessage), "the view must start with a user message"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=turn_shape,
    sizes=st.lists(st.integers(5, 300), min_size=1, max_size=4),
    keep=st.integers(1, 4),
    target_share=st.floats(0.05, 0.9),
)
def test_compaction_view_is_valid_and_rebuildable(
    shape: list[tuple[int, str]], sizes: list[int], keep: int, target_share: float
) -> None:
    log = build(shape, sizes)
    frozen = [m.model_copy(deep=True) for m in log]
    policy = ContextPolicy(context_window=100_000, compact_keep_turns=keep)
    model = RecordingModel(replies=[SUMMARY])
    before = apply_compactions(log, [])
    from langchain_kimi_context.tokens import default_token_counter

    target = max(1, int(default_token_counter().count_messages(before) * target_share))
    view, report = compact(log, policy, model=model, target_tokens=target)
    assert log == frozen  # never mutated
    assert_valid(view)
    if report.record is None:
        assert view == before
        return
    rebuilt = apply_compactions(log, [report.record])
    assert rebuilt == view
    assert report.tokens_after < report.tokens_before
    summaries = [m for m in view if is_marked(m, "summary")]
    assert len(summaries) <= 1
    if summaries:
        assert view[1] is summaries[0] or view[1] == summaries[0]
    kept: Any = report.record.first_kept_id
    if kept is not None:
        # everything from the first kept message on is in the view, in log order
        ids = [m.id for m in log]
        tail_ids = ids[ids.index(kept) :]
        assert [m.id for m in view][-len(tail_ids) :] == tail_ids
