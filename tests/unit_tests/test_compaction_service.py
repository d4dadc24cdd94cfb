"""CompactionService (pure): records, the calibrated decision, runs, recovery; TruncateHead."""

from __future__ import annotations

import asyncio

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_kimi_context.context.compaction import (
    CompactionContext,
    CompactionDraft,
    CompactionService,
    LocalCompaction,
    TruncateHead,
    apply_compactions,
    compact,
    compaction_target,
    maybe_compact,
)
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.tokens import ContextSizeTracker, default_token_counter
from tests.compaction_helpers import conversation

POLICY = ContextPolicy(
    context_window=32_000,
    compact_trigger_tokens=1_000,
    compact_trigger_ratio=None,
    compact_reserve_tokens=None,
    compact_budget="off",
)


def _with_usage(log: list[BaseMessage], input_tokens: int) -> list[BaseMessage]:
    last = log[-1]
    usage = {"input_tokens": input_tokens, "output_tokens": 5, "total_tokens": input_tokens + 5}
    return [*log[:-1], last.model_copy(update={"usage_metadata": usage})]


def test_decide_uses_the_tracker_it_is_given() -> None:
    log = conversation(2, words=5)
    counter = default_token_counter()
    tracker = ContextSizeTracker(counter)
    tracker.record_usage(log, prompt_tokens=5_000)
    service = CompactionService(POLICY, token_counter=counter)
    assert not service.decide(log)  # a small view by the local count
    decision = service.decide(log, tracker=tracker)
    assert decision
    assert decision.tokens == 5_000
    assert decision.reason == "absolute"


def test_without_a_tracker_the_newest_server_usage_anchors_one() -> None:
    log = _with_usage(conversation(2, words=5), 4_000)
    service = CompactionService(POLICY)
    decision = service.decide([*log, HumanMessage("next", id="n")])
    assert decision.tokens > 4_000  # the server's count plus the calibrated rest


def test_usage_before_the_last_record_is_stale() -> None:
    log = _with_usage(conversation(3, words=5), 50_000)
    _, report = compact(log, POLICY, strategy=TruncateHead(preserve_tokens=40))
    assert report.record is not None
    decision = CompactionService(POLICY).decide(
        apply_compactions(log, [report.record]), [report.record]
    )
    assert decision.tokens < 1_000


def test_maybe_compact_aims_at_the_calibrated_target() -> None:
    seen: list[CompactionContext] = []

    class Spy(LocalCompaction):
        name = "spy"

        def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
            seen.append(ctx)
            return draft

    log = _with_usage(conversation(3, words=40), 3_000)
    run = CompactionService(POLICY, strategy=Spy()).maybe_compact(log)
    assert run.ran
    assert run.record is None
    assert run.to_dict()["ran"]
    ctx = seen[0]
    assert ctx.decision is not None
    assert ctx.trigger == "absolute"
    local = ctx.tokens(apply_compactions(ctx.log, ctx.records))
    assert ctx.target_tokens == compaction_target(
        POLICY, ctx.window, "absolute", tokens=ctx.decision.tokens, local_tokens=local
    )


def test_not_due_reports_nothing() -> None:
    run = asyncio.run(CompactionService(POLICY).amaybe_compact(conversation(1, words=3)))
    assert not run.ran
    assert run.to_dict() == {"ran": False}


def test_a_run_that_does_not_shrink_the_view_is_rejected() -> None:
    class Grow(LocalCompaction):
        name = "grow"

        def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
            big = SystemMessage("summary " * 2_000, id="big")
            first = ctx.log[1].id
            return CompactionDraft(summary=big, first_kept_id=first, strategies=(self.name,))

    run = CompactionService(POLICY, strategy=Grow()).compact(conversation(2, words=5))
    assert run.report is not None
    assert run.report.record is not None
    assert run.record is None
    assert run.rejected
    assert "not smaller" in run.to_dict()["rejected"]
    assert run.view == conversation(2, words=5)  # the view is the one before the run


def test_maybe_compact_reports_a_rejected_run_as_no_change() -> None:
    class Grow(LocalCompaction):
        name = "grow"

        def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
            big = SystemMessage("summary " * 2_000, id="big")
            return CompactionDraft(summary=big, first_kept_id=ctx.log[3].id, strategies=("grow",))

    log = conversation(6, words=60)
    view, report = maybe_compact(log, POLICY, strategy=Grow())
    assert report is not None  # the trigger fired and the strategy ran
    assert report.record is None  # nothing for the caller to store
    assert not report.changed
    assert view == log


def test_a_kept_record_carries_the_savings_when_prices_are_known() -> None:
    service = CompactionService(POLICY, get_profile("kimi-k2.6"), TruncateHead(200))
    run = service.compact(conversation(6, words=40))
    assert run.record is not None
    assert run.savings is not None
    assert run.to_dict()["record_id"] == run.record.record_id


def test_recovery_uses_the_services_strategy_and_profile() -> None:
    strategy = TruncateHead()
    recovery = CompactionService(POLICY, get_profile("kimi-k2.6"), strategy).recovery()
    assert recovery.strategy is strategy
    assert recovery.model_name == "kimi-k2.6"


def test_truncate_head_keeps_whole_recent_turns() -> None:
    log = conversation(6, words=40)
    view, report = compact(log, POLICY, strategy=TruncateHead(preserve_tokens=300))
    assert report.record is not None
    assert report.record.strategy == "truncate_head"
    assert view[0].id == "sys"
    assert get_marker(view[1])["truncated"] > 0
    assert isinstance(view[2], HumanMessage)
    assert default_token_counter().count_messages(view[2:]) <= 300


def test_truncate_head_pins_the_user_message_inside_one_long_turn() -> None:
    log: list[BaseMessage] = [SystemMessage("sys", id="s"), HumanMessage("go", id="h")]
    log += [AIMessage(f"step {i} " * 80, id=f"a{i}") for i in range(8)]
    view, report = compact(log, POLICY, strategy=TruncateHead(preserve_tokens=300))
    assert report.record is not None
    assert report.record.pinned_ids == ("h",)
    assert [m.id for m in view[2:4]] == ["h", report.record.first_kept_id]


def test_truncate_head_changes_nothing_when_everything_fits() -> None:
    log = conversation(2, words=5)
    view, report = compact(log, POLICY, strategy=TruncateHead(preserve_tokens=10_000))
    assert report.record is None
    assert view == apply_compactions(log, [])
