"""Overflow recovery against the emulator: the server's real "exceeded model token limit".

The emulator serves a model with a 20,000-token window that the package does not know
(it assumes the default 262,144), so the first overflow comes from the server, names the
real window, and must be recovered from in the fixed order: compact (up to 3) ->
truncate tool results (once) -> a readable ``KimiContextOverflowError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_kimi_context import KimiChatModel, get_profile
from langchain_kimi_context.context.compaction import (
    OverflowRecovery,
    apply_compactions,
    forget_learned_windows,
    learned_context_window,
    maybe_compact,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.errors import KimiAPIContextOverflowError, KimiContextOverflowError
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.testing import KimiEmulator
from langchain_kimi_context.testing.validation import known_profiles

SMALL = "kimi-overflow-test-20k"
WINDOW = 20_000


@pytest.fixture
def small_emulator(make_emulator: Any) -> Iterator[KimiEmulator]:
    base = get_profile("kimi-k2.6")
    profile = KimiModelProfile(
        name=SMALL, context_window=WINDOW, max_output_tokens=4_096, pricing=base.pricing
    )
    forget_learned_windows()
    yield make_emulator(profiles={**known_profiles(), SMALL: profile})
    forget_learned_windows()


def model(emu: KimiEmulator) -> KimiChatModel:
    # The profile claims a bigger window than the server's (a wrong, user-given profile,
    # so no automatic /v1/models refresh): the window is learned from the overflow error.
    return KimiChatModel(
        model=SMALL,
        base_url=emu.base_url,
        api_key=emu.api_key,
        max_retries=0,
        max_tokens=1_000,
        profile_overrides={"context_window": 262_144},
    )


def policy(**kw: Any) -> ContextPolicy:
    return ContextPolicy(compact_retry_backoff_s=0.01, **kw)


def long_history(turns: int = 30) -> list[BaseMessage]:
    log: list[BaseMessage] = [SystemMessage("You are a coding agent.", id="sys")]
    for i in range(turns):
        log.append(HumanMessage(f"Turn {i}: TODO: item {i}. " + "details " * 400, id=f"h{i}"))
        log.append(AIMessage(f"Answer {i}: " + "words " * 400, id=f"a{i}"))
    log.append(HumanMessage("@say recovered", id="last"))
    return log


def statuses(emu: KimiEmulator) -> list[int]:
    return [r.status for r in emu.chat_requests]


def test_server_overflow_compacts_learns_window_and_recovers(small_emulator: KimiEmulator) -> None:
    emu = small_emulator
    chat = model(emu)
    log = long_history()
    with pytest.raises(KimiAPIContextOverflowError):
        chat.invoke(log)  # the plain call: a raw 400
    emu.reset()
    learned: list[tuple[str, int]] = []
    recovery = OverflowRecovery(
        policy(),
        model=chat,
        model_name=SMALL,
        on_window_learned=lambda m, w: (learned.append((m, w)), chat.learn_context_window(w)),
    )
    out = recovery.invoke(chat.invoke, log, snapshot_id="ckpt-1")
    assert out.result.content == "recovered"
    assert out.steps == ("call", "overflow", "compact#1", "call")
    assert statuses(emu)[0] == 400
    assert statuses(emu)[-1] == 200
    # summariser calls fit the 20K window too (chunks sized from the learned window)
    assert all(s == 200 for s in statuses(emu)[1:])
    assert learned == [(SMALL, WINDOW)]
    assert learned_context_window(SMALL) == WINDOW
    assert get_profile(SMALL).context_window == WINDOW
    (record,) = out.records
    assert record.trigger == "overflow"
    assert record.snapshot_id == "ckpt-1"
    assert out.messages == apply_compactions(log, out.records)
    assert out.messages[-1].id == "last"  # the current turn is kept verbatim


def test_learned_window_prevents_the_same_overflow(small_emulator: KimiEmulator) -> None:
    emu = small_emulator
    chat = model(emu)
    log = long_history(10)
    records = list(
        OverflowRecovery(policy(), model=chat, model_name=SMALL)
        .invoke(chat.invoke, long_history())
        .records
    )
    assert records  # the window is learned now
    emu.reset()
    # a new session on the same model: the trigger now uses the learned window and
    # compacts before the server has to refuse anything
    log = [SystemMessage("sys", id="sys")]
    records = []
    for i in range(40):
        log.append(HumanMessage(f"turn {i}\n@reply 400", id=f"n{i}"))
        log.append(chat.invoke(apply_compactions(log, records)).model_copy(update={"id": f"r{i}"}))
        _, report = maybe_compact(
            log, policy(), model=chat, records=records, profile=get_profile(SMALL)
        )
        if report is not None and report.record is not None:
            records.append(report.record)
    assert records
    assert 400 not in statuses(emu)


def test_truncation_exit_path(small_emulator: KimiEmulator) -> None:
    emu = small_emulator
    chat = model(emu)
    call = {"name": "read_file", "args": {"path": "big.log"}, "id": "call_1"}
    log: list[BaseMessage] = [
        HumanMessage("read big.log\n@say done", id="h"),
        AIMessage("", tool_calls=[call], id="a"),
        ToolMessage("log line\n" * 12_000, tool_call_id="call_1", name="read_file", id="t"),
    ]
    out = OverflowRecovery(policy(), model=chat, model_name=SMALL).invoke(chat.invoke, log)
    assert out.steps == ("call", "overflow", "compact#1:no progress", "truncate#1", "call")
    assert out.result.content == "done"
    assert out.records[-1].strategy == "truncate_tool_results"
    assert len(str(out.messages[-1].content)) < len(str(log[-1].content))
    assert statuses(emu) == [400, 200]


def test_gives_up_with_a_readable_error(small_emulator: KimiEmulator) -> None:
    emu = small_emulator
    chat = model(emu)
    log: list[BaseMessage] = [HumanMessage("paste: " + "data " * 30_000, id="h")]
    with pytest.raises(KimiContextOverflowError) as info:
        OverflowRecovery(policy(), model=chat, model_name=SMALL).invoke(chat.invoke, log)
    message = str(info.value)
    assert "new session" in message
    assert "larger context window" in message
    assert f"{WINDOW:,}" in message
    assert info.value.recovery_steps == (  # type: ignore[attr-defined]
        "call",
        "overflow",
        "compact#1:no progress",
        "truncate#1:no progress",
        "give_up",
    )
    assert statuses(emu) == [400]  # nothing pointless was sent again


async def test_async_recovery_same_order(small_emulator: KimiEmulator) -> None:
    chat = model(small_emulator)
    out = await OverflowRecovery(policy(), model=chat, model_name=SMALL).ainvoke(
        chat.ainvoke, long_history()
    )
    assert out.steps == ("call", "overflow", "compact#1", "call")
    assert out.result.content == "recovered"
