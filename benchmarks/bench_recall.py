"""Recall benchmark: how many planted facts the model can still reach, recall off vs on.

It reuses the price-budget benchmark's session (``benchmarks/bench_budget.py``: a long
coding session against the Kimi emulator over real HTTP, one ~5K-token tool result and
one planted fact per turn) and runs it at each budget twice: with the budget
benchmark's policy (recall off) and with ``recall=True``. Two families of facts:

* ``facts``: the budget benchmark's planted facts (decisions, TODOs, errors, environment
  lines): the kinds a summary is told to keep;
* ``details``: one line per turn of the module listing the tool returned (``def
  settle_<turn>_<i>(...)``: "a line of an old file read"), which summaries drop.

Per run and family it counts:

* ``in view``: probes still in what the model sees;
* ``by one search`` (recall on only): out-of-view items that ONE ``search_history``
  call finds: the query is what the model would remember (a fact's words without its
  probe, e.g. ``"checksum mismatch ledger shard 17"``; a detail's function name), and
  the item counts when a hit among the top 5 is the message holding it and
  ``read_history`` returns that message with the item in it;
* ``reachable``: in view + by one search.

The plain way (``unmanaged``: the full history on every call) is in the same run as the
reference: everything in view, at the full price.

Run: ``.venv/bin/python benchmarks/bench_recall.py`` (``--quick``: 40 turns, fewer
budgets; ``--model kimi-k3`` to change the model). Results: ``docs/benchmarks/recall.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_budget import TOOL_LINES, Fact, planted_facts, run_session, ways
from langchain_kimi_context.context.compaction.trigger import budget_for
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.recall import RecallIndex
from langchain_kimi_context.errors import KimiAPIContextOverflowError
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import KimiEmulator

TOP_K = 5


def recall_query(fact: Fact) -> str:
    """What the model would search for: the fact's words, without its probe."""
    t = fact.turn
    return {
        "decision": f"ledger shard {t} settles in batches",
        "todo": f"migrate refund queue region {t}",
        "error": f"checksum mismatch ledger shard {t}",
        "environment": f"LEDGER_REPLICAS_{t} replicas host h{t}",
    }[fact.kind]


def details(turns: int) -> list[tuple[str, str, str]]:
    """One code line per turn of the tool results: ``(probe, query, full line)``."""
    out = []
    for t in range(turns):
        i = (t * 37) % TOOL_LINES
        line = f"    def settle_{t}_{i}(self, rows): return [r for r in rows if r.shard == {i}]"
        out.append((f"def settle_{t}_{i}(", f"settle_{t}_{i}", line))
    return out


def one_search(index: RecallIndex, query: str, needle: str) -> bool:
    """Whether one search for ``query`` finds a message that reads back with ``needle``."""
    for hit in index.search(query, TOP_K):
        if needle in index.read(hit.message_id, 0, hit.total_chars).text:
            return True
    return False


def run(emu: KimiEmulator, model: str, quick: bool, turns: int) -> list[dict[str, Any]]:
    """Every way of the budget benchmark (transcript form left out), recall off and on."""
    profile = get_profile(model)
    rows: list[dict[str, Any]] = []
    for name, policy in ways(model, quick):
        if "transcript" in name:
            continue
        variants: list[tuple[str, ContextPolicy | None]] = [("off", policy)]
        if policy is not None:
            variants.append(("on", policy.replace(recall=True)))
        for recall, variant in variants:
            started = time.perf_counter()
            try:
                result = run_session(emu, model, variant, way=name, turns=turns)
            except KimiAPIContextOverflowError as exc:  # the plain way outgrows the window
                row = {"model": model, "way": name, "recall": recall, "overflow": str(exc)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            facts = planted_facts(turns)
            seen = "\n".join(str(m.content) for m in result.view)
            fact_view = [f for f in facts if f.probe in seen]
            items = details(turns)
            detail_view = [d for d in items if d[0] in seen]
            fact_search = detail_search = row_all = 0
            if recall == "on":
                index = RecallIndex()
                index.update(result.log)
                fact_search = sum(
                    one_search(index, recall_query(f), f.text) for f in facts if f not in fact_view
                )
                row_all = sum(one_search(index, recall_query(f), f.text) for f in facts)
                detail_search = sum(
                    one_search(index, query, line)
                    for probe, query, line in items
                    if probe not in seen
                )
            row = {
                "model": model,
                "way": name,
                "recall": recall,
                "budget_tokens": budget_for(profile.context_window, variant, profile)
                if variant is not None
                else None,
                "bill_usd": round(result.cost, 4),
                "compactions": len(result.records),
                "items": turns,
                "facts_in_view": len(fact_view),
                "facts_by_one_search": fact_search,
                "facts_reachable": len(fact_view) + fact_search,
                "details_in_view": len(detail_view),
                "details_by_one_search": detail_search,
                "details_reachable": len(detail_view) + detail_search,
                "facts_found_by_search_incl_in_view": row_all,
                "overflowed_at_turn": getattr(result, "overflowed_at", None),
                "seconds": round(time.perf_counter() - started, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of the rows (in view + by one search = reachable)."""
    lines = [
        "| model | way | budget | recall | bill USD | compactions | facts in view | facts "
        "reachable | details in view | details reachable |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "overflow" in r:
            lines.append(
                f"| {r['model']} | {r['way']} | - | {r['recall']} | - | - | overflowed the "
                "window | - | - | - |"
            )
            continue
        budget = f"{r['budget_tokens']:,}" if r["budget_tokens"] else "-"
        n = r["items"]
        if r.get("overflowed_at_turn") is not None:
            budget = f"- (overflowed the window at turn {r['overflowed_at_turn']})"
        lines.append(
            f"| {r['model']} | {r['way']} | {budget} | {r['recall']} | {r['bill_usd']:.2f} | "
            f"{r['compactions']} | {r['facts_in_view']}/{n} | {r['facts_reachable']}/{n} | "
            f"{r['details_in_view']}/{n} | {r['details_reachable']}/{n} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; print JSON lines and a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="40 turns, fewer budgets")
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--model", default="kimi-k2.6")
    args = parser.parse_args(argv)
    turns = args.turns or (40 if args.quick else 100)
    with KimiEmulator() as emu:
        rows = run(emu, args.model, args.quick, turns)
    print(f"\n## {turns}-turn session, one planted fact per turn, recall off vs on\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
