"""Unit tests of compaction: trigger, records, structural strategies, LLM compaction logic.

The summariser here is an in-process chat model that records its inputs (the logic is
tested first with langchain_core fakes); the same behaviour is tested over real HTTP
against the emulator in ``tests/integration_tests/test_compaction_emulator.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult

from langchain_kimi_context.context.compaction import (
    SUMMARY_HEADER,
    ClearToolResults,
    CollapseCodeBlocks,
    CompactionRecord,
    CompactionRecordError,
    CompositeCompaction,
    DedupeFileReads,
    LLMCompaction,
    acompact,
    apply_compactions,
    compact,
    current_context_tokens,
    ensure_message_ids,
    maybe_compact,
    should_compact,
)
from langchain_kimi_context.context.markers import get_marker, is_marked
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.tokens import default_token_counter
from tests.compaction_helpers import SUMMARY, RecordingModel, conversation, server_error


def keep3(log: list[BaseMessage]) -> int:
    """A target that fits the last 3 turns (tail budget = 0.6 x target) but not all 8+."""
    return int(default_token_counter().count_messages(log[-6:]) * 1.9)


def fast_policy(**kw: Any) -> ContextPolicy:
    base: dict[str, Any] = {"context_window": 100_000, "compact_retry_backoff_s": 0.001}
    base.update(kw)
    return ContextPolicy(**base)


# ----------------------------------------------------------------------------- trigger
class TestTrigger:
    def test_ratio_form_boundary(self) -> None:
        policy = ContextPolicy(compact_trigger_ratio=0.85, compact_reserve_tokens=None)
        assert not should_compact(84_999, 100_000, policy)
        d = should_compact(85_000, 100_000, policy)
        assert d
        assert d.reason == "ratio"
        assert d.threshold == 85_000

    def test_reserve_form_boundary(self) -> None:
        policy = ContextPolicy(compact_trigger_ratio=None, compact_reserve_tokens=50_000)
        assert not should_compact(212_143, 262_144, policy)
        d = should_compact(212_144, 262_144, policy)
        assert d
        assert d.reason == "reserve"

    def test_reserve_never_below_half_the_window(self) -> None:
        policy = ContextPolicy(compact_trigger_ratio=None, compact_reserve_tokens=50_000)
        assert not should_compact(15_999, 32_000, policy)
        assert should_compact(16_000, 32_000, policy).reason == "reserve"

    def test_absolute_form_and_seed(self) -> None:
        seed = ContextPolicy.seed_defaults()
        assert not should_compact(180_000, 256_000, seed)
        d = should_compact(180_001, 256_000, seed)
        assert d.reason == "absolute"
        # the 20% reserve of the seed: 80% of 256K = 204,800
        assert should_compact(204_800, 256_000, seed).reasons == ("absolute", "ratio")
        # with a small window the ratio form fires before 180K
        assert should_compact(100_000, 120_000, seed).reason == "ratio"

    def test_all_forms_disabled(self) -> None:
        policy = ContextPolicy(compact_trigger_ratio=None, compact_reserve_tokens=None)
        d = should_compact(10**9, 1000, policy)
        assert not d
        assert d.threshold is None

    def test_rejects_bad_input(self) -> None:
        with pytest.raises(ValueError, match="window"):
            should_compact(1, 0, ContextPolicy())
        with pytest.raises(ValueError, match="tokens"):
            should_compact(-1, 10, ContextPolicy())

    def test_current_tokens_use_server_usage_plus_estimate(self) -> None:
        usage = {"input_tokens": 50_000, "output_tokens": 500, "total_tokens": 50_500}
        ai = AIMessage("x", id="a", usage_metadata=usage)  # type: ignore[arg-type]
        tail = HumanMessage("more " * 400, id="h2")
        assert current_context_tokens([HumanMessage("q", id="h"), ai]) == 50_500
        with_tail = current_context_tokens([HumanMessage("q", id="h"), ai, tail])
        assert 50_500 + 300 < with_tail < 50_500 + 700
        # usage before a compaction describes a larger view: ignored
        small = current_context_tokens([ai, tail], usage_valid_after="a")
        assert small < 1_000


# ----------------------------------------------------------------------------- records
class TestRecords:
    def test_record_round_trips_through_json(self) -> None:
        summary = SystemMessage("s", id="sum")
        cleared = ToolMessage("[cleared]", tool_call_id="c1", id="t1", name="read_file")
        rec = CompactionRecord(
            record_id="r",
            trigger="ratio",
            strategy="clear_tool_results+llm_summary",
            tokens_before=1000,
            tokens_after=200,
            ratio=5.0,
            snapshot_id="checkpoint-42",
            summary=summary,
            first_kept_id="h3",
            pinned_ids=("h2",),
            replacements={"t1": cleared},
            covered_until_id="a9",
        )
        data = json.loads(json.dumps(rec.to_dict()))
        back = CompactionRecord.from_dict(data)
        assert back == rec
        assert isinstance(back.replacements["t1"], ToolMessage)
        assert isinstance(back.summary, SystemMessage)

    def test_apply_never_mutates_and_keeps_system_and_pinned(self) -> None:
        log = conversation(4)
        snapshot = [m.model_copy(deep=True) for m in log]
        rec = CompactionRecord(
            record_id="r",
            trigger="manual",
            strategy="llm_summary",
            tokens_before=1,
            tokens_after=1,
            ratio=1.0,
            summary=SystemMessage("S", id="sum"),
            first_kept_id="a3",
            pinned_ids=("h3",),
        )
        view = apply_compactions(log, [rec])
        assert [m.id for m in view] == ["sys", "sum", "h3", "a3"]
        assert log == snapshot

    def test_latest_summary_wins_and_replacements_accumulate(self) -> None:
        log = conversation(4)
        mk = CompactionRecord
        r1 = mk(
            record_id="1",
            trigger="m",
            strategy="x",
            tokens_before=1,
            tokens_after=1,
            ratio=1,
            summary=SystemMessage("S1", id="s1"),
            first_kept_id="h2",
        )
        r2 = mk(
            record_id="2",
            trigger="m",
            strategy="x",
            tokens_before=1,
            tokens_after=1,
            ratio=1,
            replacements={"a3": AIMessage("short", id="a3")},
        )
        r3 = mk(
            record_id="3",
            trigger="m",
            strategy="x",
            tokens_before=1,
            tokens_after=1,
            ratio=1,
            summary=SystemMessage("S2", id="s2"),
            first_kept_id="h3",
        )
        view = apply_compactions(log, [r1, r2, r3])
        assert [m.id for m in view] == ["sys", "s2", "h3", "a3"]
        assert view[-1].content == "short"

    def test_unknown_anchor_id_is_a_clear_error(self) -> None:
        rec = CompactionRecord(
            record_id="r9",
            trigger="m",
            strategy="x",
            tokens_before=1,
            tokens_after=1,
            ratio=1,
            summary=SystemMessage("S"),
            first_kept_id="nope",
        )
        with pytest.raises(CompactionRecordError, match=r"r9.*nope.*full append-only log"):
            apply_compactions(conversation(2), [rec])

    def test_messages_without_ids_get_deterministic_ids(self) -> None:
        log = [HumanMessage("same"), AIMessage("a"), HumanMessage("same")]
        ids = [m.id for m in ensure_message_ids(log)]
        assert len(set(ids)) == 3
        assert ids == [m.id for m in ensure_message_ids(list(log))]
        assert all(m.id is None for m in log)  # originals untouched
        # appending keeps earlier ids stable, so records stay valid
        longer = [*log, AIMessage("b")]
        assert [m.id for m in ensure_message_ids(longer)][:3] == ids


# ----------------------------------------------------------------------------- structural
def tool_session(reads: Sequence[tuple[str, str]]) -> list[BaseMessage]:
    log: list[BaseMessage] = [SystemMessage("sys", id="sys"), HumanMessage("work", id="h0")]
    for i, (tool, path) in enumerate(reads):
        log.append(
            AIMessage(
                "",
                id=f"a{i}",
                tool_calls=[{"name": tool, "args": {"path": path}, "id": f"c{i}"}],
            )
        )
        log.append(ToolMessage(f"content of {path} v{i}\n" * 200, tool_call_id=f"c{i}", id=f"t{i}"))
    log.append(AIMessage("done", id="final"))
    return log


class TestStructural:
    def test_dedupe_keeps_newest_read_of_each_file(self) -> None:
        log = tool_session([("read_file", "a.py"), ("read_file", "b.py"), ("read_file", "a.py")])
        view, report = compact(log, fast_policy(), strategy=DedupeFileReads(), target_tokens=1)
        by_id = {m.id: m for m in view}
        assert is_marked(by_id["t0"], "cleared_tool_result")
        assert "a.py" in str(by_id["t0"].content)
        assert by_id["t1"].content == log[5].content  # b.py: only read
        assert by_id["t2"].content == log[7].content  # newest a.py read kept
        assert report.record is not None
        assert set(report.record.replacements) == {"t0"}
        assert isinstance(by_id["t0"], ToolMessage)
        assert by_id["t0"].tool_call_id == "c0"

    def test_dedupe_ignores_non_read_tools(self) -> None:
        log = tool_session([("write_file", "a.py"), ("write_file", "a.py")])
        _, report = compact(log, fast_policy(), strategy=DedupeFileReads(), target_tokens=1)
        assert report.record is None

    def test_clear_tool_results_keeps_newest_k_and_ids(self) -> None:
        log = tool_session([("search", f"q{i}") for i in range(6)])
        policy = fast_policy(clear_tool_results_keep=2)
        view, report = compact(log, policy, strategy=ClearToolResults(), target_tokens=1)
        results = [m for m in view if isinstance(m, ToolMessage)]
        assert [is_marked(m, "cleared_tool_result") for m in results] == [True] * 4 + [False] * 2
        assert [m.tool_call_id for m in results] == [f"c{i}" for i in range(6)]
        assert report.tokens_after < report.tokens_before / 2
        marker = get_marker(results[0])
        assert marker is not None
        assert marker["original_chars"] == len(str(log[3].content))

    def test_collapse_code_blocks_outside_recent_turns(self) -> None:
        code = "def handler(event):\n" + "    x = event\n" * 40 + "class Repo:\n    pass\n"
        log: list[BaseMessage] = [
            HumanMessage("write it", id="h0"),
            AIMessage(f"Here:\n```python\n{code}```\nDone.", id="a0"),
            HumanMessage("again", id="h1"),
            AIMessage(f"```python\n{code}```", id="a1"),
        ]
        view, _ = compact(
            log, fast_policy(compact_keep_turns=1), strategy=CollapseCodeBlocks(), target_tokens=1
        )
        old = str(view[1].content)
        assert "def handler(event):" in old
        assert "class Repo:" in old
        assert "lines collapsed" in old
        assert old.startswith("Here:")
        assert old.endswith("Done.")
        assert view[3].content == log[3].content  # the recent turn is verbatim

    def test_short_code_is_kept_whole(self) -> None:
        code = "def f():\n" + "    pass\n" * 10
        log: list[BaseMessage] = [
            HumanMessage("q", id="h0"),
            AIMessage(f"```python\n{code}```", id="a0"),
            HumanMessage("next", id="h1"),
        ]
        _, report = compact(
            log, fast_policy(compact_keep_turns=1), strategy=CollapseCodeBlocks(), target_tokens=1
        )
        assert report.record is None

    def test_composite_stops_when_under_target(self) -> None:
        log = tool_session([("read_file", "a.py"), ("read_file", "a.py"), ("search", "x")])
        tokens_all = compact(log, fast_policy(), strategy=DedupeFileReads(), target_tokens=10**9)[
            1
        ].tokens_before
        # dedupe alone removes one ~1.2K-token read: a target just under the full size is met
        strategy = CompositeCompaction([DedupeFileReads(), ClearToolResults(keep=0)])
        _, report = compact(log, fast_policy(), strategy=strategy, target_tokens=tokens_all - 500)
        assert report.record is not None
        assert report.record.strategy == "dedupe_file_reads"
        _, report = compact(log, fast_policy(), strategy=strategy, target_tokens=100)
        assert report.record is not None
        assert report.record.strategy == "dedupe_file_reads+clear_tool_results"

    def test_structural_records_rebuild_the_same_view(self) -> None:
        log = tool_session([("read_file", "a.py"), ("read_file", "a.py"), ("search", "x")])
        view, report = compact(log, fast_policy(), target_tokens=1)
        assert report.record is not None
        assert apply_compactions(log, [report.record]) == view


# ----------------------------------------------------------------------------- LLM
class TestLLMCompaction:
    def test_keeps_last_n_turns_verbatim_and_marks_summary(self) -> None:
        model = RecordingModel(replies=[SUMMARY])
        log = conversation(20)
        view, report = compact(log, fast_policy(), model=model, target_tokens=3_000)
        assert report.record is not None
        assert "llm_summary" in report.record.strategy
        assert view[0].id == "sys"
        summary = view[1]
        assert isinstance(summary, SystemMessage)
        assert is_marked(summary, "summary")
        assert str(summary.content).startswith(SUMMARY_HEADER)
        assert view[2:] == log[-6:]  # last 3 user turns, byte for byte
        assert report.record.first_kept_id == "h17"
        assert report.ratio >= 4

    def test_no_summary_call_for_a_span_tiny_next_to_the_kept_tail(self) -> None:
        """The current turn's huge tool result dominates: a summary of the few small
        earlier messages would buy nothing, so no model call and no record."""
        model = RecordingModel(replies=[SUMMARY])
        call = {"id": "functions.fetch:0", "name": "fetch", "args": {"url": "x"}}
        log: list[BaseMessage] = [
            SystemMessage("sys", id="sys"),
            HumanMessage("hi", id="h0"),
            AIMessage("hello", id="a0"),
            HumanMessage("fetch x", id="h1"),
            AIMessage("", id="a1", tool_calls=[call]),
            ToolMessage("word " * 40_000, tool_call_id="functions.fetch:0", id="t1"),
        ]
        policy = fast_policy(compact_keep_turns=1)
        view, report = compact(log, policy, strategy=LLMCompaction(model), target_tokens=2_000)
        assert model.calls == []
        assert report.record is None
        assert view == log
        # with the floor switched off the same call is made (and saves next to nothing)
        compact(
            log,
            policy.replace(compact_min_span_share=0.0),
            strategy=LLMCompaction(model),
            target_tokens=2_000,
        )
        assert len(model.calls) == 1

    def test_summariser_sees_whole_span_without_thinking_and_no_tools(self) -> None:
        model = RecordingModel(replies=[SUMMARY])
        log = conversation(6)
        log[2] = AIMessage(
            "visible answer 0",
            id="a0",
            additional_kwargs={"reasoning_content": "SECRET-THOUGHT"},
        )
        compact(log, fast_policy(), strategy=LLMCompaction(model), target_tokens=3_000)
        (request,) = model.calls
        assert isinstance(request[0], SystemMessage)
        assert "compact" in str(request[0].content).lower()
        text = str(request[1].content)
        assert "user 0:" in text
        assert "user 2:" in text
        assert "visible answer 0" in text
        assert "SECRET-THOUGHT" not in text
        assert "user 3:" not in text  # kept verbatim, not summarised

    def test_failed_summary_never_wipes_history(self) -> None:
        model = RecordingModel(replies=[server_error()])
        log = conversation(8)
        view, report = compact(
            log, fast_policy(compact_max_attempts=3), model=model, target_tokens=keep3(log)
        )
        assert len(model.calls) == 3
        assert report.record is None
        assert view == apply_compactions(log, [])
        assert len(report.failures) == 3
        assert "KimiServerError" in report.failures[0]

    def test_empty_summary_is_retried_then_stored(self) -> None:
        model = RecordingModel(replies=["", "   ", SUMMARY])
        log = conversation(8)
        _view, report = compact(log, fast_policy(), model=model, target_tokens=keep3(log))
        assert len(model.calls) == 3
        assert report.model_calls == 3
        assert report.record is not None
        assert report.record.summary is not None
        assert "## Current Task" in str(report.record.summary.content)

    def test_non_retryable_error_stops_at_once(self) -> None:
        model = RecordingModel(replies=[ValueError("bad request shape")])
        log = conversation(8)
        _, report = compact(log, fast_policy(), model=model, target_tokens=keep3(log))
        assert len(model.calls) == 1
        assert report.record is None

    def test_large_span_is_summarised_in_chunks_and_merged(self) -> None:
        def echo(messages: list[BaseMessage]) -> str:
            return f"## Current Task\n- chunk {len(model.calls)}"

        model = RecordingModel(replies=[echo])
        log = conversation(30, words=200)
        policy = fast_policy(compact_chunk_tokens=3_000)
        _, report = compact(log, policy, model=model, target_tokens=5_000)
        assert len(model.calls) > 3
        # each later chunk gets the summary so far folded in
        for i, call in enumerate(model.calls[1:], start=1):
            assert f"chunk {i}" in str(call[1].content)
        # the whole span was seen: the earliest and the last summarised turns
        seen = "\n".join(str(c[1].content) for c in model.calls)
        assert "user 0:" in seen
        assert "user 26:" in seen
        assert report.record is not None

    def test_second_compaction_folds_earlier_summary(self) -> None:
        model = RecordingModel(replies=["## Current Task\n- FACT-FROM-FIRST", SUMMARY])
        log = conversation(8)
        _, r1 = compact(log, fast_policy(), model=model, target_tokens=keep3(log))
        assert r1.record is not None
        log2 = [*log, *conversation(8, sys=False)[:0]]
        for i in range(8, 14):
            log2 += [
                HumanMessage(f"user {i}: more " * 150, id=f"h{i}"),
                AIMessage("ok", id=f"a{i}"),
            ]
        view2, r2 = compact(
            log2, fast_policy(), model=model, records=[r1.record], target_tokens=keep3(log2)
        )
        assert r2.record is not None
        text = str(model.calls[1][1].content)
        assert "FACT-FROM-FIRST" in text
        assert "<previous_summary>" in text
        assert "user 5:" in text
        assert "user 1:" not in text
        assert view2 == apply_compactions(log2, [r1.record, r2.record])

    def test_prefix_stable_after_compaction(self) -> None:
        model = RecordingModel(replies=[SUMMARY])
        log = conversation(8)
        view, report = compact(log, fast_policy(), model=model, target_tokens=keep3(log))
        assert report.record is not None
        log2 = [*log, HumanMessage("next", id="hx"), AIMessage("ok", id="ax")]
        view2 = apply_compactions(log2, [report.record])
        assert view2[: len(view)] == view  # the next request extends the same prefix

    def test_long_tool_loop_cuts_inside_the_turn_and_pins_the_task(self) -> None:
        model = RecordingModel(replies=[SUMMARY])
        log = tool_session([("search", f"q{i}") for i in range(12)])
        # room (0.6 x target) for the last two tool steps + the final answer, not more
        target = int(default_token_counter().count_messages(log[-5:]) / 0.6) + 1
        view, report = compact(
            log, fast_policy(), model=model, strategy=LLMCompaction(model), target_tokens=target
        )
        assert report.record is not None
        assert report.record.pinned_ids == ("h0",)
        assert [m.id for m in view[:3]] == ["sys", view[1].id, "h0"]
        assert isinstance(view[3], AIMessage)
        assert view[3].tool_calls
        # pairing stays valid: every tool result follows its call
        call_ids = set()
        for m in view:
            if isinstance(m, AIMessage):
                call_ids |= {c["id"] for c in m.tool_calls}
            if isinstance(m, ToolMessage):
                assert m.tool_call_id in call_ids

    def test_timeout_returns_pre_compaction_state(self) -> None:
        import time

        def slow(messages: list[BaseMessage]) -> str:
            time.sleep(1.0)
            return SUMMARY

        model = RecordingModel(replies=[slow])
        log = conversation(8)
        view, report = compact(
            log, fast_policy(compact_timeout_s=0.2), model=model, target_tokens=1
        )
        assert report.timed_out
        assert report.record is None
        assert view == apply_compactions(log, [])

    async def test_async_compaction_matches_sync(self) -> None:
        log = conversation(8)
        view_s, rep_s = compact(
            log, fast_policy(), model=RecordingModel(replies=[SUMMARY]), target_tokens=keep3(log)
        )
        view_a, rep_a = await acompact(
            log, fast_policy(), model=RecordingModel(replies=[SUMMARY]), target_tokens=keep3(log)
        )
        assert view_s == view_a
        assert rep_s.record == rep_a.record

    async def test_async_timeout_returns_pre_compaction_state(self) -> None:
        class Slow(RecordingModel):
            async def _agenerate(
                self, messages: list[BaseMessage], *a: Any, **k: Any
            ) -> ChatResult:
                await asyncio.sleep(2)
                return ChatResult(generations=[ChatGeneration(message=AIMessage(SUMMARY))])

        log = conversation(8)
        view, report = await acompact(
            log, fast_policy(compact_timeout_s=0.2), model=Slow(), target_tokens=1
        )
        assert report.timed_out
        assert view == apply_compactions(log, [])

    def test_maybe_compact_uses_trigger(self) -> None:
        log = conversation(8)
        usage = {"input_tokens": 95_000, "output_tokens": 10, "total_tokens": 95_010}
        log[-1] = AIMessage("x", id="a7", usage_metadata=usage)  # type: ignore[arg-type]
        model = RecordingModel(replies=[SUMMARY])
        policy = fast_policy(compact_reserve_tokens=None)
        _, report = maybe_compact(log, policy, model=model)
        assert report is not None
        assert report.decision is not None
        assert report.decision.reason == "ratio"
        assert report.record is not None
        assert report.record.trigger == "ratio"
        _, none = maybe_compact(conversation(2), policy, model=model)
        assert none is None


def test_record_survives_a_langgraph_checkpoint_serializer() -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    model = RecordingModel(replies=[SUMMARY])
    log = tool_session([("read_file", "a.py"), ("read_file", "a.py"), ("search", "x")])
    log += conversation(6, sys=False)
    _, report = compact(log, fast_policy(), model=model, target_tokens=300)
    assert report.record is not None
    assert report.record.summary is not None
    assert report.record.replacements
    serde = JsonPlusSerializer()
    back = serde.loads_typed(serde.dumps_typed(report.record))
    assert back == report.record
    assert apply_compactions(log, [back]) == apply_compactions(log, [report.record])


def test_keep_zero_turns_then_new_messages_stay_visible() -> None:
    model = RecordingModel(replies=[SUMMARY, SUMMARY])
    log = conversation(6)
    view, report = compact(log, fast_policy(compact_keep_turns=0), model=model, target_tokens=200)
    assert report.record is not None
    assert report.record.first_kept_id is None
    assert [m.id for m in view] == ["sys", view[1].id]
    log2 = [*log, HumanMessage("new question", id="new"), AIMessage("answer", id="ans")]
    assert [m.id for m in apply_compactions(log2, [report.record])][2:] == ["new", "ans"]
    # a later compaction only summarises what came after the first one
    more = [HumanMessage(f"more {i} " * 300, id=f"m{i}") for i in range(4)]
    _, r2 = compact([*log2, *more], fast_policy(), model=model, records=[report.record],
                    target_tokens=300)  # fmt: skip
    assert r2.record is not None
    text = str(model.calls[1][1].content)
    assert "new question" in text
    assert "user 0:" not in text


def test_report_is_json_serialisable() -> None:
    log = conversation(8)
    usage = {"input_tokens": 95_000, "output_tokens": 10, "total_tokens": 95_010}
    log[-1] = AIMessage("x", id="a7", usage_metadata=usage)  # type: ignore[arg-type]
    _, report = maybe_compact(
        log, fast_policy(compact_reserve_tokens=None), model=RecordingModel(replies=[SUMMARY])
    )
    assert report is not None
    data = json.loads(json.dumps(report.to_dict()))
    assert data["decision"]["reason"] == "ratio"
    assert data["record"]["summary"]["type"] == "system"
    assert data["ratio"] > 1


def test_records_may_be_given_as_dicts_from_a_state_channel() -> None:
    model = RecordingModel(replies=[SUMMARY, SUMMARY])
    log = conversation(10)
    view, report = compact(log, fast_policy(), model=model, target_tokens=keep3(log))
    assert report.record is not None
    stored = [json.loads(json.dumps(report.record.to_dict()))]
    assert apply_compactions(log, stored) == view
    log2 = [*log, *[HumanMessage(f"more {i} " * 200, id=f"m{i}") for i in range(6)]]
    _, r2 = compact(log2, fast_policy(), model=model, records=stored, target_tokens=1_500)
    assert r2.record is not None
    assert "<previous_summary>" in str(model.calls[-1][1].content)
