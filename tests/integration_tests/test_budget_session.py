"""The price budget on the emulator: cost, retention, the summary request forms, the cache.

A reduced run of ``benchmarks/bench_budget.py`` (the same session builder and scoring):
kimi-k3 sessions with one ~5K-token tool result per turn and one planted fact per turn.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool

from benchmarks.bench_budget import (
    TOOLS,
    SessionResult,
    facts_retained,
    planted_facts,
    run_session,
    tool_output,
    user_line,
)
from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import create_kimi_agent
from langchain_kimi_context.context.compaction import SUMMARY_HEADER, compact
from langchain_kimi_context.context.compaction.savings import savings_ledger
from langchain_kimi_context.context.compaction.trigger import budget_for
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import Pricing, get_profile
from langchain_kimi_context.testing import KimiEmulator
from langchain_kimi_context.testing.ledger import RequestRecord
from tests.compaction_helpers import is_summary_request

K3 = "kimi-k3"
TURNS = 40


@pytest.fixture(scope="module")
def emu() -> Iterator[KimiEmulator]:
    with KimiEmulator() as server:
        yield server


@pytest.fixture(scope="module")
def sessions(emu: KimiEmulator) -> dict[str, SessionResult]:
    return {
        way: run_session(emu, K3, policy, way=way, turns=TURNS)
        for way, policy in (("unmanaged", None), ("defaults", ContextPolicy()))
    }


@pytest.fixture(scope="module")
def requests(emu: KimiEmulator, sessions: dict[str, SessionResult]) -> list[RequestRecord]:
    """What the emulator received during the defaults run (the last one)."""
    return list(emu.chat_requests)


def test_defaults_compact_at_the_price_budget_and_cost_a_fraction(
    sessions: dict[str, SessionResult],
) -> None:
    unmanaged, defaults = sessions["unmanaged"], sessions["defaults"]
    k3 = get_profile(K3)
    budget = budget_for(k3.context_window, ContextPolicy(), k3)
    assert budget is not None
    assert budget < k3.context_window // 10  # far below the window rule (891,290)
    assert defaults.records
    assert {r.trigger for r in defaults.records} == {"budget"}
    # one turn (~5.3K tokens) past the budget at most, against ~210K unmanaged
    assert defaults.peak_context < budget + 8_000
    assert unmanaged.peak_context > 3 * defaults.peak_context
    assert defaults.cost < 0.6 * unmanaged.cost


def test_no_planted_fact_is_lost_to_the_tighter_budget(
    sessions: dict[str, SessionResult],
) -> None:
    defaults = sessions["defaults"]
    assert defaults.retained == defaults.facts == TURNS
    # the early facts survive only through summaries folded across compactions
    summary = str(defaults.view[1].content)
    assert summary.startswith(SUMMARY_HEADER)
    assert len(defaults.records) >= 3
    early = [f for f in planted_facts(TURNS) if f.turn < 10]
    assert all(f.probe in summary for f in early)
    assert {f.kind for f in early} == {"decision", "todo", "error", "environment"}


def test_savings_ledger_matches_the_bill(sessions: dict[str, SessionResult]) -> None:
    unmanaged, defaults = sessions["unmanaged"], sessions["defaults"]
    ledger = savings_ledger(defaults.log, defaults.records, get_profile(K3).pricing)
    assert ledger.compactions == len(defaults.records)
    assert [e.tokens_before for e in ledger.entries] == [r.tokens_before for r in defaults.records]
    assert all(e.tokens_after < e.tokens_before for e in ledger.entries)
    assert ledger.entries[0].calls_after > ledger.entries[-1].calls_after
    assert ledger.entries[0].saved > 0  # the first compaction has paid for itself
    measured = unmanaged.cost - defaults.cost
    assert measured > 0
    assert ledger.saved == pytest.approx(measured, rel=0.35)
    data = json.loads(json.dumps(ledger.to_dict()))
    assert data["compactions"] == ledger.compactions
    assert data["currency"] == "USD"


def test_summary_reads_the_cached_prefix(
    sessions: dict[str, SessionResult], requests: list[RequestRecord]
) -> None:
    summaries = [r for r in requests if is_summary_request(r.body)]
    assert len(summaries) == len(sessions["defaults"].records)
    for request in summaries:
        body = request.body
        assert body["tool_choice"] == "none"
        assert [t["function"]["name"] for t in body["tools"]] == ["inspect_module"]
        assert body["messages"][-1]["content"].startswith("Compaction request:")
        usage = request.usage or {}
        assert usage["cached_tokens"] >= 0.9 * usage["prompt_tokens"]


def test_prefix_stays_byte_stable_until_the_next_compaction(
    sessions: dict[str, SessionResult], requests: list[RequestRecord]
) -> None:
    groups: dict[str, list[RequestRecord]] = {}
    for request in (r for r in requests if not is_summary_request(r.body)):
        messages = request.body["messages"]
        if len(messages) > 1 and str(messages[1].get("content", "")).startswith(SUMMARY_HEADER):
            groups.setdefault(messages[1]["content"], []).append(request)
    assert len(groups) == len(sessions["defaults"].records)
    for group in groups.values():
        assert len(group) >= 4
        for before, after in itertools.pairwise(group):
            sent_before = [json.dumps(m, sort_keys=True) for m in before.body["messages"]]
            sent_after = [json.dumps(m, sort_keys=True) for m in after.body["messages"]]
            assert sent_after[: len(sent_before)] == sent_before
            usage_before = before.usage or {}
            usage_after = after.usage or {}
            # every later call re-reads the whole previous request from the cache
            # (whole 256-token blocks)
            assert usage_after["cached_tokens"] >= usage_before["prompt_tokens"] - 256


def _cost_of_one_compaction(
    emu: KimiEmulator, log: list[BaseMessage], policy: ContextPolicy, model: KimiChatModel
) -> tuple[float, str, list[BaseMessage]]:
    before = emu.ledger(emu.api_key).cost("USD")
    view, report = compact(
        log, policy, model=model, tools=TOOLS, trigger="budget", profile=get_profile(K3)
    )
    assert report.record is not None
    assert report.record.summary is not None
    form = str((get_marker(report.record.summary) or {}).get("request_form"))
    return emu.ledger(emu.api_key).cost("USD") - before, form, view


def test_both_request_forms_measured_and_auto_keeps_the_cheaper(emu: KimiEmulator) -> None:
    session = run_session(emu, K3, None, way="unmanaged", turns=14)  # ~75K tokens, cached
    log = session.log
    chat = KimiChatModel(model=K3, base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
    cached, form_c, view_c = _cost_of_one_compaction(
        emu, log, ContextPolicy(compact_summary_form="cached_prefix"), chat
    )
    transcript, form_t, view_t = _cost_of_one_compaction(
        emu, log, ContextPolicy(compact_summary_form="transcript"), chat
    )
    assert (form_c, form_t) == ("cached_prefix", "transcript")
    assert cached < transcript / 2
    # one call over the whole conversation: every fact reaches the summariser at once
    assert len(facts_retained(view_c, planted_facts(14))) == 14
    assert len(view_t) == len(view_c)
    _, form_auto, _ = _cost_of_one_compaction(emu, log, ContextPolicy(), chat)
    assert form_auto == "cached_prefix"
    # without a cache-hit discount the history costs the same either way: the transcript
    # (only the summarised span, chunked) is the cheaper read
    flat = Pricing(currency="USD", input_cache_hit=3.0, input_cache_miss=3.0, output=15.0)
    no_discount = KimiChatModel(
        model=K3,
        base_url=emu.base_url,
        api_key=emu.api_key,
        max_retries=0,
        profile_overrides={"pricing": flat},
    )
    _, form_flat, _ = _cost_of_one_compaction(emu, log, ContextPolicy(), no_discount)
    assert form_flat == "transcript"


def test_memory_usage_reports_the_savings_ledger(emu: KimiEmulator, tmp_path: Path) -> None:
    emu.reset()
    model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
    policy = ContextPolicy(compact_budget=6_000, compact_budget_floor_tokens=2_000)
    mem = RollingSnapshotMemory(model, db_path=tmp_path / "m.db", policy=policy)
    sid = mem.create_session(system="You refactor code.")
    for i in range(16):
        mem.chat(sid, f"Step {i}. Decision: keep plan {i}.\n@reply 900")
    usage = mem.usage(sid)
    assert usage.savings is not None
    assert usage.compactions >= 2
    assert usage.savings.compactions == usage.compactions
    assert {e.trigger for e in usage.savings.entries} == {"budget"}
    first = usage.savings.entries[0]
    assert first.tokens_after < first.tokens_before
    assert first.calls_after > usage.savings.entries[-1].calls_after
    assert usage.savings.to_dict()["saved"] == pytest.approx(usage.savings.saved, abs=1e-6)
    mem.close_session(sid)


def test_the_agent_compacts_at_the_price_budget_by_default(
    emu: KimiEmulator, tmp_path: Path
) -> None:
    emu.reset()
    facts = planted_facts(14)

    @tool
    def inspect_module(module: str) -> str:
        """Print a module of the repository with its build notes."""
        return tool_output(int(module.lstrip("m")), facts)

    model = KimiChatModel(model=K3, base_url=emu.base_url, api_key=emu.api_key)
    agent = create_kimi_agent(model, [inspect_module], db_path=tmp_path / "agent.db")
    cfg = {"configurable": {"thread_id": "budget"}}
    compactions = []
    for turn in range(14):
        inputs = {"messages": [HumanMessage(user_line(turn, facts))]}
        for update in agent.stream(inputs, cfg, stream_mode="updates"):
            report = (update.get("compact") or {}).get("reports", {}).get("compact", {})
            if report.get("record_id"):
                compactions.append(report)
    state = agent.get_state(cfg).values
    assert compactions
    assert {c["trigger"] for c in compactions} == {"budget"}
    assert compactions[-1]["savings"]["compactions"] == len(state["compactions"])
    assert compactions[-1]["savings"]["currency"] == "USD"
    ledger = savings_ledger(state["messages"], state["compactions"], get_profile(K3).pricing)
    assert ledger.entries[0].calls_after > 0
    summaries = [r for r in emu.chat_requests if is_summary_request(r.body)]
    assert summaries
    for request in summaries:
        usage = request.usage or {}
        assert usage["cached_tokens"] >= 0.85 * usage["prompt_tokens"]
    agent_prompts = [
        (r.usage or {}).get("prompt_tokens", 0)
        for r in emu.chat_requests
        if not is_summary_request(r.body)
    ]
    assert max(agent_prompts) < 75_000  # the 14-turn session reaches ~75K unmanaged


def test_the_middleware_compacts_at_the_budget_from_the_cached_prefix(emu: KimiEmulator) -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    from langchain_kimi_context import KimiContextMiddleware

    emu.reset()
    facts = planted_facts(14)

    @tool
    def inspect_module(module: str) -> str:
        """Print a module of the repository with its build notes."""
        return tool_output(int(module.lstrip("m")), facts)

    model = KimiChatModel(model=K3, base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
    agent = create_agent(
        model,
        tools=[inspect_module],
        system_prompt="You are a careful coding agent.",
        middleware=[KimiContextMiddleware(ContextPolicy(compact_budget=30_000))],
        checkpointer=InMemorySaver(),
    )
    cfg: Any = {"configurable": {"thread_id": "mw"}}
    for turn in range(8):
        agent.invoke({"messages": [HumanMessage(user_line(turn, facts))]}, cfg)
    assert agent.get_state(cfg).values.get("kimi_compactions")
    summaries = [r for r in emu.chat_requests if is_summary_request(r.body)]
    assert summaries
    for request in summaries:
        assert request.body["messages"][0]["content"] == "You are a careful coding agent."
        usage = request.usage or {}
        assert usage["cached_tokens"] >= 0.8 * usage["prompt_tokens"]
