"""Retention check: a scripted 60-turn session seeded with facts that must survive.

The session (``benchmarks/bench_compaction.py``: tool calls, tracebacks, file paths,
decisions, TODOs, a current task stated at turn 50) runs against the emulator with
compaction after every turn. It compacts more than once (structural and LLM), every
summary folds the previous one in, and at the end every fact the compaction rules say to
keep (errors, paths, decisions, TODOs, the current task) is in what the model sees. The
same scenario with LangChain's SummarizationMiddleware loses most of them (the benchmark
prints both).
"""

from __future__ import annotations

from benchmarks.bench_compaction import FACTS, run_kimi
from langchain_kimi_context.context.compaction import SUMMARY_HEADER, apply_compactions
from langchain_kimi_context.testing import KimiEmulator


def test_sixty_turn_session_keeps_the_facts_through_several_compactions(
    emulator: KimiEmulator,
) -> None:
    result = run_kimi(emulator, turns=60)
    summaries = [r for r in result.records if r.summary is not None]
    assert len(result.records) >= 2
    assert len(summaries) >= 2  # the second summary had to fold the first in
    assert min(result.llm_ratios) >= 4.0  # view before / after
    assert min(result.summary_ratios) >= 4.0  # summarised span / summary
    # each later summary request carried the previous summary
    summary_requests = [r.body for r in emulator.chat_requests if not r.body.get("tools")]
    assert (
        sum("<previous_summary>" in str(b["messages"][-1]["content"]) for b in summary_requests)
        >= 1
    )
    retained = result.retained()
    lost = [probe for _, probe, kept in retained if not kept]
    assert lost == [], f"facts lost: {lost}"
    assert len(retained) == len(FACTS) == 12
    # early facts survive only through the summaries (their turns are long gone)
    final_summary = str(summaries[-1].summary.content) if summaries[-1].summary else ""
    assert final_summary.startswith(SUMMARY_HEADER)
    for probe in ("src/ingest/parser.py", "ValueError: invalid literal", "SQLite"):
        assert probe in final_summary
    # nothing lost: the full log is intact and the view is rebuilt from it
    assert result.view == apply_compactions(result.log, result.records)
    assert sum(1 for m in result.log if m.type == "human") == 60
