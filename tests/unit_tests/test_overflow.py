"""Unit tests of the overflow-recovery chain (fake call functions; HTTP tests elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_kimi_context.context.compaction import (
    OverflowRecovery,
    apply_compactions,
    learned_context_window,
)
from langchain_kimi_context.context.compaction.recovery import forget_learned_windows
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.errors import KimiContextOverflowError
from langchain_kimi_context.profiles import get_profile
from tests.compaction_helpers import SUMMARY, RecordingModel


@pytest.fixture(autouse=True)
def _clean_learned() -> Iterator[None]:
    forget_learned_windows()
    yield
    forget_learned_windows()


def session() -> list[BaseMessage]:
    log: list[BaseMessage] = [SystemMessage("sys", id="sys")]
    for i in range(10):
        log.append(HumanMessage(f"turn {i} " * 100, id=f"h{i}"))
        log.append(
            AIMessage("", id=f"a{i}", tool_calls=[{"name": "grep", "args": {}, "id": f"c{i}"}])
        )
        log.append(ToolMessage(f"match {i}\n" * 300, tool_call_id=f"c{i}", id=f"t{i}"))
        log.append(AIMessage(f"answer {i}", id=f"f{i}"))
    return log


def policy(**kw: Any) -> ContextPolicy:
    return ContextPolicy(context_window=100_000, compact_retry_backoff_s=0.001, **kw)


def overflow(window: int | None = 32_768) -> KimiContextOverflowError:
    text = f"Invalid request: Your request exceeded model token limit: {window}"
    return KimiContextOverflowError(text, window=window, requested=40_000)


def truncate_all(messages: list[BaseMessage], pol: ContextPolicy) -> tuple[list[BaseMessage], Any]:
    out: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, ToolMessage) and len(str(m.content)) > 100:
            m = with_marker(
                m.model_copy(update={"content": str(m.content)[:100]}), "truncated_tool_result"
            )
        out.append(m)
    return out, None


class Caller:
    """A model call that overflows the first ``fails`` times."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.views: list[list[BaseMessage]] = []

    def __call__(self, view: list[BaseMessage]) -> str:
        self.views.append(view)
        if len(self.views) <= self.fails:
            raise overflow()
        return "answer"


def test_no_overflow_is_a_plain_call() -> None:
    call = Caller(0)
    out = OverflowRecovery(policy()).invoke(call, session())
    assert out.result == "answer"
    assert out.steps == ("call",)
    assert out.records == ()


def test_compaction_then_success() -> None:
    call = Caller(1)
    model = RecordingModel(replies=[SUMMARY])
    log = session()
    out = OverflowRecovery(policy(), model=model, model_name="test-ovf-1").invoke(
        call, log, snapshot_id="ck-7"
    )
    assert out.steps == ("call", "overflow", "compact#1", "call")
    assert len(out.records) == 1
    assert out.records[0].trigger == "overflow"
    assert out.records[0].snapshot_id == "ck-7"
    assert out.messages == apply_compactions(log, out.records)
    assert call.views[1] == out.messages
    assert len(call.views[1]) < len(call.views[0])


def test_exact_order_compact_three_times_then_truncate_then_error() -> None:
    call = Caller(100)
    log = session()
    rec = OverflowRecovery(policy(), model=RecordingModel(replies=[SUMMARY]), truncate=truncate_all)
    with pytest.raises(KimiContextOverflowError) as info:
        rec.invoke(call, log)
    steps = info.value.recovery_steps  # type: ignore[attr-defined]
    assert steps[:3] == ("call", "overflow", "compact#1")
    assert steps[-1] == "give_up"
    kinds = [s.split(":")[0] for s in steps if s not in ("call", "overflow", "give_up")]
    # compaction attempts first (up to 3), then exactly one truncation, then the error
    assert kinds[-1] == "truncate#1"
    assert kinds[:-1] == [f"compact#{i}" for i in range(1, len(kinds))]
    assert 1 <= len(kinds) - 1 <= 3
    # every view sent was smaller than the one before
    sizes = [len(v) for v in call.views]
    assert sizes == sorted(sizes, reverse=True)
    message = str(info.value)
    assert "start a new session" in message.lower()
    assert "larger context window" in message
    assert info.value.window == 32_768


def test_truncation_exit_path() -> None:
    # structural compaction can't help (no model, nothing structural left) -> truncation
    log: list[BaseMessage] = [
        HumanMessage("read", id="h"),
        AIMessage("", id="a", tool_calls=[{"name": "cat", "args": {}, "id": "c"}]),
        ToolMessage("x" * 50_000, tool_call_id="c", id="t"),
    ]
    call = Caller(1)
    out = OverflowRecovery(policy(), truncate=truncate_all).invoke(call, log)
    assert out.steps == ("call", "overflow", "compact#1:no progress", "truncate#1", "call")
    assert out.records[-1].strategy == "truncate_tool_results"
    assert len(str(out.messages[-1].content)) == 100
    assert out.messages == apply_compactions(log, out.records)


def test_truncation_then_readable_error() -> None:
    log: list[BaseMessage] = [
        HumanMessage("read", id="h"),
        AIMessage("", id="a", tool_calls=[{"name": "cat", "args": {}, "id": "c"}]),
        ToolMessage("x" * 50_000, tool_call_id="c", id="t"),
    ]
    call = Caller(100)
    with pytest.raises(KimiContextOverflowError, match="new session") as info:
        OverflowRecovery(policy(), truncate=truncate_all).invoke(call, log)
    assert info.value.recovery_steps == (  # type: ignore[attr-defined]
        "call",
        "overflow",
        "compact#1:no progress",
        "truncate#1",
        "call",
        "overflow",
        "give_up",
    )
    assert len(call.views) == 2


def test_failing_summariser_keeps_history_and_moves_on() -> None:
    call = Caller(100)
    model = RecordingModel(replies=[ValueError("summariser down")])
    log = [
        m
        for m in session()
        if not isinstance(m, ToolMessage) and not (isinstance(m, AIMessage) and m.tool_calls)
    ]
    with pytest.raises(KimiContextOverflowError) as info:
        OverflowRecovery(policy(), model=model, truncate=truncate_all).invoke(call, log)
    steps = info.value.recovery_steps  # type: ignore[attr-defined]
    assert "compact#1:no progress" in steps
    assert all(v == apply_compactions(log, []) for v in call.views)


def test_learns_window_from_error() -> None:
    name = "test-ovf-learn"
    assert get_profile(name).context_window > 32_768
    seen: list[tuple[str, int]] = []
    OverflowRecovery(
        policy(),
        model=RecordingModel(replies=[SUMMARY]),
        model_name=name,
        on_window_learned=lambda m, w: seen.append((m, w)),
    ).invoke(Caller(1), session())
    assert learned_context_window(name) == 32_768
    assert get_profile(name).context_window == 32_768
    assert seen == [(name, 32_768)]


def test_other_errors_propagate_untouched() -> None:
    def call(view: list[BaseMessage]) -> str:
        raise RuntimeError("tool exploded")

    with pytest.raises(RuntimeError, match="tool exploded"):
        OverflowRecovery(policy()).invoke(call, session())


async def test_async_chain_same_order() -> None:
    count = 0

    async def call(view: list[BaseMessage]) -> str:
        nonlocal count
        count += 1
        if count == 1:
            raise overflow()
        return "ok"

    out = await OverflowRecovery(policy(), model=RecordingModel(replies=[SUMMARY])).ainvoke(
        call, session()
    )
    assert out.result == "ok"
    assert out.steps == ("call", "overflow", "compact#1", "call")


def test_preflight_does_not_fit_is_recovered_before_sending() -> None:
    from langchain_kimi_context.context.compaction import ensure_fits
    from langchain_kimi_context.context.guard import preflight_guard

    pol = policy().replace(context_window=20_000, reserved_output_tokens=1_000)
    sent: list[list[BaseMessage]] = []

    def call(view: list[BaseMessage]) -> str:
        sent.append(view)
        return "ok"

    log = session() * 1
    log += [HumanMessage("bulk " * 2_000 + str(i), id=f"x{i}") for i in range(12)]
    log.append(HumanMessage("now", id="now"))
    rec = OverflowRecovery(
        pol,
        model=RecordingModel(replies=[SUMMARY]),
        preflight=lambda view: ensure_fits(preflight_guard(view, pol)[1]),
    )
    out = rec.invoke(call, log)
    assert out.steps == ("call", "overflow", "compact#1", "call")
    assert len(sent) == 1  # the oversized request was never sent
    assert preflight_guard(sent[0], pol)[1].fits
