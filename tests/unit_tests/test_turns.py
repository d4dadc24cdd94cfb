"""History limit by session kind: one test per behaviour of the reference notes, section 2."""

from __future__ import annotations

import itertools

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_kimi_context import ContextPolicy, limit_history_turns, prepare_context
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.turns import (
    SessionKey,
    kept_user_turns,
    parse_session_key,
    resolve_history_limit,
)


def _history(turns: int, *, system: bool = True) -> list[BaseMessage]:
    messages: list[BaseMessage] = [SystemMessage("sys", id="s")] if system else []
    for i in range(turns):
        messages += [HumanMessage(f"q{i}", id=f"u{i}"), AIMessage(f"a{i}", id=f"a{i}")]
    return messages


def _user_ids(messages: list[BaseMessage]) -> list[str | None]:
    return [m.id for m in messages if isinstance(m, HumanMessage)]


def test_session_key_shape_agent_prefix_user_id_with_colons_thread_and_topic_suffix_stripped() -> (
    None
):
    assert parse_session_key("agent:main:telegram:dm:user:with:colons:thread:42") == SessionKey(
        "main", "telegram", "dm", "user:with:colons"
    )
    assert parse_session_key("slack:channel:C123:topic:7") == SessionKey(
        None, "slack", "channel", "C123"
    )
    # Only a trailing numeric thread/topic is stripped.
    assert parse_session_key("slack:dm:u:thread:abc") == SessionKey(
        None, "slack", "dm", "u:thread:abc"
    )
    assert parse_session_key("slack:DM:U1").kind == "dm"  # type: ignore[union-attr]
    assert parse_session_key("thread-1234") is None
    assert parse_session_key("agent:x") is None


def test_dm_and_direct_use_the_per_user_override_where_zero_counts_as_set() -> None:
    policy = ContextPolicy(
        history_limit=50, dm_history_limit=5, dm_user_history_limits={"alice": 2, "bob:x": 0}
    )
    assert resolve_history_limit("tg:dm:alice", policy)[:2] == (
        2,
        "policy.dm_user_history_limits[alice]",
    )
    # 0 counts as set (it does not fall back to dm_history_limit) and means unlimited.
    assert resolve_history_limit("tg:direct:bob:x:thread:1", policy)[:2] == (
        None,
        "policy.dm_user_history_limits[bob:x]",
    )
    out, report = limit_history_turns(_history(10), policy, session_key="tg:dm:alice")
    assert _user_ids(out) == ["u8", "u9"]
    assert report.limit == 2


def test_dm_without_override_falls_back_to_dm_history_limit() -> None:
    policy = ContextPolicy(history_limit=50, dm_history_limit=3, dm_user_history_limits={"a": 1})
    assert resolve_history_limit("tg:direct:carol", policy) == (
        3,
        "policy.dm_history_limit",
        "direct",
    )
    out, _ = limit_history_turns(_history(10), policy, session_key="tg:direct:carol")
    assert _user_ids(out) == ["u7", "u8", "u9"]


def test_channel_and_group_use_the_channel_history_limit() -> None:
    policy = ContextPolicy(history_limit=50, dm_history_limit=1, channel_history_limit=4)
    for kind in ("channel", "group"):
        limit, source, parsed_kind = resolve_history_limit(f"discord:{kind}:G1", policy)
        assert (limit, source, parsed_kind) == (4, "policy.channel_history_limit", kind)
    out, _ = limit_history_turns(_history(10), policy, session_key="discord:group:G1:topic:3")
    assert len(_user_ids(out)) == 4


def test_other_kinds_get_no_kind_limit_only_the_general_policy_limit() -> None:
    kinds_only = ContextPolicy(dm_history_limit=1, channel_history_limit=1)
    out, report = limit_history_turns(_history(10), kinds_only, session_key="web:session:xyz")
    assert report.limit is None
    assert out is not None
    assert len(_user_ids(out)) == 10
    general = kinds_only.replace(history_limit=6)
    assert resolve_history_limit("web:session:xyz", general)[:2] == (6, "policy.history_limit")
    assert resolve_history_limit(None, general)[:2] == (6, "policy.history_limit")


def test_limit_keeps_last_n_user_turns_and_everything_after_the_nth_from_last_user_message() -> (
    None
):
    history = [
        SystemMessage("sys", id="s"),
        HumanMessage("q0", id="u0"),
        AIMessage("", tool_calls=[{"id": "c0", "name": "f", "args": {}}], id="a0"),
        ToolMessage("r0", tool_call_id="c0", id="t0"),
        AIMessage("a0", id="a0b"),
        HumanMessage("q1", id="u1"),
        AIMessage("", tool_calls=[{"id": "c1", "name": "f", "args": {}}], id="a1"),
        ToolMessage("r1", tool_call_id="c1", id="t1"),
        AIMessage("a1", id="a1b"),
        HumanMessage("q2", id="u2"),
    ]
    out, report = limit_history_turns(history, ContextPolicy(history_limit=2))
    assert [m.id for m in out] == ["s", "u1", "a1", "t1", "a1b", "u2"]
    assert report.dropped_messages == ("u0", "a0", "t0", "a0b")
    assert (report.user_turns_before, report.user_turns_kept) == (3, 2)


def test_limit_undefined_zero_or_negative_is_unlimited() -> None:
    history = _history(5)
    for value in (None, 0, -3):
        out, report = limit_history_turns(history, ContextPolicy(history_limit=value))
        assert out is history
        assert report.limit is None
        assert not report.cut
    out, report = limit_history_turns(history, ContextPolicy(history_limit=2), limit=0)
    assert out is history
    assert report.limit_source == "argument"


def test_same_list_returned_when_nothing_changes() -> None:
    history = _history(3)
    out, report = limit_history_turns(history, ContextPolicy(history_limit=3))
    assert out is history
    assert not report.changed


def test_limiting_can_orphan_tool_results_so_pairing_repair_runs_again() -> None:
    # A user message interleaved inside a tool-call span: cutting at it would orphan the
    # result after it; prepare_context repairs before limiting and again after it.
    call = {"id": "c0", "name": "f", "args": {}}
    history = [
        SystemMessage("sys", id="s"),
        HumanMessage("q0", id="u0"),
        AIMessage("", tool_calls=[call], id="a0"),
        HumanMessage("q1 (sent while the tool ran)", id="u1"),
        ToolMessage("r0", tool_call_id="c0", id="t0"),
        AIMessage("done", id="a0b"),
        HumanMessage("q2", id="u2"),
    ]
    raw, _ = limit_history_turns(history, ContextPolicy(history_limit=2))
    assert [m.id for m in raw] == ["s", "u1", "t0", "a0b", "u2"]  # t0 is now an orphan
    out, report = prepare_context(history, ContextPolicy(history_limit=2))
    assert [m.id for m in out] == ["s", "u1", "a0b", "u2"]
    assert report.pairing.moved_messages == ("u1",)
    assert report.limit.dropped_messages == ("u0", "a0", "t0")
    assert report.pairing_after_limit is not None
    assert not report.pairing_after_limit.changed
    # Limiting alone, then the second repair, gives a valid history too.
    from langchain_kimi_context import repair_tool_pairing

    fixed, rep = repair_tool_pairing(raw, ContextPolicy())
    assert rep.dropped_orphans == ("t0",)
    assert [m.id for m in fixed] == ["s", "u1", "a0b", "u2"]


def test_system_messages_at_the_head_are_always_kept() -> None:
    history = [SystemMessage("a", id="s1"), SystemMessage("b", id="s2"), *_history(4, system=False)]
    out, _ = limit_history_turns(history, ContextPolicy(history_limit=1))
    assert [m.id for m in out] == ["s1", "s2", "u3", "a3"]


def test_summary_is_never_a_user_turn_and_is_kept() -> None:
    summary = with_marker(HumanMessage("summary of turns 0-5", id="sum"), "summary")
    history = [SystemMessage("sys", id="s"), summary, *_history(4, system=False)]
    out, report = limit_history_turns(history, ContextPolicy(history_limit=2))
    assert [m.id for m in out] == ["s", "sum", "u2", "a2", "u3", "a3"]
    assert report.user_turns_before == 4
    # With N=4 nothing is cut: the summary does not count as a fifth turn.
    assert limit_history_turns(history, ContextPolicy(history_limit=4))[0] is history


def test_hysteresis_keeps_t_until_n_plus_k_then_cuts_back_stateless() -> None:
    n, k = 3, 2
    expected = []
    for t in range(1, 15):
        expected.append(t if t <= n + k else n + (t - n) % (k + 1))
    assert [kept_user_turns(t, n, k) for t in range(1, 15)] == expected
    assert [kept_user_turns(t, 3, 0) for t in range(1, 7)] == [1, 2, 3, 3, 3, 3]
    # Never fewer than N, never more than N + K.
    assert all(n <= kept_user_turns(t, n, k) <= n + k for t in range(n, 100))


def test_hysteresis_keeps_the_request_prefix_byte_stable_for_k_turns_between_cuts() -> None:
    policy = ContextPolicy(history_limit=3, history_hysteresis=4)
    full = _history(30)
    first_kept: list[str | None] = []
    cuts = 0
    for t in range(1, 31):
        view = full[: 1 + 2 * t]
        out, report = limit_history_turns(view, policy)
        first_kept.append(_user_ids(list(out))[0])
        if t > 1 and first_kept[-1] != first_kept[-2]:
            cuts += 1
            assert report.cut
    # The first kept turn moves once every K + 1 = 5 turns once past N + K.
    changes = [t for t in range(1, 30) if first_kept[t] != first_kept[t - 1]]
    assert all(b - a == 5 for a, b in itertools.pairwise(changes))
    assert cuts == len(changes) >= 4
