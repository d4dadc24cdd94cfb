"""Price-budget benchmark: what a long agentic session costs under each compaction trigger.

One run against the Kimi emulator (real HTTP, today's prices from the model profiles,
content-prefix caching): a 100-turn coding session in which each turn is a user line,
one tool call returning about 5K tokens and a short answer; 100 facts are planted, one
per turn (``Decision:`` and ``TODO:`` lines in user messages, error and environment lines
in tool results). Each model runs it:

* ``unmanaged``: the full history on every call (prefix caching on, as for all ways);
* ``defaults``: ``ContextPolicy()`` (the price budget, cache-friendly summary);
* ``window rule``: ``ContextPolicy(compact_budget="off")``, the fraction/reserve trigger
  that was the default before the price budget;
* ``fixed N``: ``ContextPolicy(compact_budget=N)`` for a sweep of fixed budgets;
* ``defaults, transcript form``: the defaults with the summary read as a transcript
  (the cache-unfriendly request form), to compare the two summary request forms.

It prints one JSON line per way (bill, calls, peak context, compactions, facts retained
in what the model sees at the end, the savings ledger's total) and a Markdown table;
``--plot PATH`` also draws cost and retention against the budget (matplotlib, the
``bench`` extra).

Run: ``.venv/bin/python benchmarks/bench_budget.py`` (about 2 minutes on 2 cores) or
``--quick`` (40 turns, fewer budgets). The session builder (:func:`run_session`) and the
scoring (:func:`facts_retained`) are importable; ``tests/integration_tests/
test_budget_session.py`` runs a reduced session.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    get_buffer_string,
)

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.context.compaction import (
    CompactionRecord,
    apply_compactions,
    maybe_compact,
)
from langchain_kimi_context.context.compaction.savings import savings_ledger
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.errors import KimiContextOverflowError
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import KimiEmulator

SYSTEM_PROMPT = (
    "You are a careful coding agent working in the repository of a payment service. "
    "Use the tools to inspect modules before you change them."
)
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "inspect_module",
            "description": "Print a module of the repository with its build notes.",
            "parameters": {
                "type": "object",
                "properties": {"module": {"type": "string"}},
                "required": ["module"],
            },
        },
    }
]
TOOL_LINES = 185
"""Lines of a tool result: about 5,000 tokens of the emulator's tokenizer."""


@dataclass(frozen=True)
class Fact:
    """A planted fact: where it appears and the probe searched for at the end."""

    turn: int
    kind: str
    text: str

    @property
    def probe(self) -> str:
        """A token that only this fact contains."""
        return f"fact-{self.turn:03d}"


def planted_facts(turns: int = 100) -> list[Fact]:
    """One fact per turn, four kinds in rotation (two in user lines, two in tool results).

    Args:
        turns: Session length.

    Returns:
        The facts, oldest first.
    """
    facts = []
    for t in range(turns):
        probe = f"fact-{t:03d}"
        kind = ("decision", "todo", "error", "environment")[t % 4]
        text = {
            "decision": f"Decision: ledger shard {t} settles in batches of {10 + t} ({probe}).",
            "todo": f"TODO: migrate the refund queue of region {t} to the new ledger ({probe}).",
            "error": f"ValueError: checksum mismatch in ledger shard {t} ({probe})",
            "environment": f"environment: LEDGER_REPLICAS_{t}={t % 7 + 2} on host h{t} ({probe})",
        }[kind]
        facts.append(Fact(t, kind, text))
    return facts


def user_line(turn: int, facts: Sequence[Fact]) -> str:
    """The user message of ``turn`` with the emulator's script directives."""
    planted = [f.text for f in facts if f.turn == turn and f.kind in ("decision", "todo")]
    lines = [f"Step {turn}: review the settlement module m{turn} and continue.", *planted]
    lines.append(f'@call inspect_module {{"module": "m{turn}"}}')
    lines.append("@reply 40")
    return "\n".join(lines)


def tool_output(turn: int, facts: Sequence[Fact]) -> str:
    """About 5K tokens of module listing; error/environment facts sit in the middle."""
    planted = [f.text for f in facts if f.turn == turn and f.kind in ("error", "environment")]
    body = [
        f"    def settle_{turn}_{i}(self, rows): return [r for r in rows if r.shard == {i}]"
        for i in range(TOOL_LINES)
    ]
    body[TOOL_LINES // 2 : TOOL_LINES // 2] = planted
    return "\n".join([f"# module m{turn}", *body])


def facts_retained(view: Sequence[BaseMessage], facts: Sequence[Fact]) -> list[Fact]:
    """The facts whose probe is still in what the model sees.

    Args:
        view: The final view (summaries included).
        facts: The planted facts.

    Returns:
        The retained facts.
    """
    seen = "\n".join(get_buffer_string([m]) for m in view)
    return [f for f in facts if f.probe in seen]


@dataclass
class SessionResult:
    """What one way of running the session produced."""

    way: str
    model: str
    log: list[BaseMessage]
    view: list[BaseMessage]
    records: list[CompactionRecord] = field(default_factory=list)
    cost: float = 0.0
    calls: int = 0
    peak_context: int = 0
    summary_calls: int = 0
    retained: int = 0
    facts: int = 0
    ledger_saved: float = 0.0
    forms: tuple[str, ...] = ()
    overflowed_at: int | None = None

    def row(self) -> dict[str, Any]:
        """The result as plain JSON types."""
        return {
            "model": self.model,
            "way": self.way,
            "bill_usd": round(self.cost, 4),
            "calls": self.calls,
            "summary_calls": self.summary_calls,
            "peak_context": self.peak_context,
            "compactions": len(self.records),
            "facts_retained": f"{self.retained}/{self.facts}",
            "ledger_saved_usd": round(self.ledger_saved, 4),
            "summary_forms": sorted(set(self.forms)),
            "overflowed_at_turn": self.overflowed_at,
        }


def run_session(
    emu: KimiEmulator,
    model: str,
    policy: ContextPolicy | None,
    *,
    way: str = "",
    turns: int = 100,
    **compact_kwargs: Any,
) -> SessionResult:
    """Run the session on ``emu`` and bill it (``policy=None``: unmanaged).

    The emulator is reset first, so its ledger holds only this session.

    Args:
        emu: A running emulator.
        model: The model id (``kimi-k3``, ``kimi-k2.6``).
        policy: The compaction policy, or ``None`` for the full history on every call.
        way: The label of the result.
        turns: Session length.
        **compact_kwargs: Passed on to ``maybe_compact`` (e.g. ``strategy=``).

    Returns:
        The result.
    """
    emu.reset()
    facts = planted_facts(turns)
    chat = KimiChatModel(model=model, base_url=emu.base_url, api_key=emu.api_key, max_retries=0)
    agent = chat.bind_tools(TOOLS)
    profile = get_profile(model)
    log: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT, id="system")]
    records: list[CompactionRecord] = []
    overflowed_at: int | None = None
    for turn in range(turns):
        log.append(HumanMessage(user_line(turn, facts), id=f"u{turn}"))
        for step in range(4):
            try:
                reply = agent.invoke(apply_compactions(log, records))
            except KimiContextOverflowError:
                overflowed_at = turn
                break
            log.append(reply.model_copy(update={"id": f"r{turn}-{step}"}))
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                break
            for call in reply.tool_calls:
                log.append(
                    ToolMessage(
                        tool_output(turn, facts),
                        tool_call_id=call["id"],
                        name=call["name"],
                        id=f"t{turn}-{step}",
                    )
                )
        if overflowed_at is not None:
            log.pop()  # the turn that did not fit
            break
        if policy is not None:
            _, report = maybe_compact(
                log,
                policy,
                model=chat,
                records=records,
                tools=TOOLS,
                profile=profile,
                **compact_kwargs,
            )
            if report is not None and report.record is not None:
                records.append(report.record)
    view = apply_compactions(log, records)
    ledger = emu.ledger(emu.api_key)
    agent_requests = [r for r in emu.chat_requests if r.body.get("tool_choice") != "none"]
    summary_requests = [
        r
        for r in emu.chat_requests
        if r.body.get("tool_choice") == "none" or not r.body.get("tools")
    ]
    kept = facts_retained(view, facts)
    saved = savings_ledger(log, records, profile.pricing).saved if records else 0.0
    forms = tuple(
        str((get_marker(r.summary) or {}).get("request_form", "?"))
        for r in records
        if r.summary is not None
    )
    return SessionResult(
        way=way or ("unmanaged" if policy is None else "managed"),
        model=model,
        log=log,
        view=view,
        records=records,
        cost=ledger.cost("USD"),
        calls=ledger.requests,
        peak_context=max((r.usage or {}).get("prompt_tokens", 0) for r in agent_requests),
        summary_calls=len(summary_requests),
        retained=len(kept),
        facts=len(facts),
        ledger_saved=saved,
        forms=forms,
        overflowed_at=overflowed_at,
    )


def ways(model: str, quick: bool) -> list[tuple[str, ContextPolicy | None]]:
    """The ways compared for ``model``: unmanaged, defaults, window rule, fixed budgets."""
    fixed = (40_000, 80_000, 160_000) if quick else (30_000, 60_000, 120_000, 250_000)
    out: list[tuple[str, ContextPolicy | None]] = [
        ("unmanaged", None),
        ("defaults", ContextPolicy()),
        ("defaults, transcript form", ContextPolicy(compact_summary_form="transcript")),
        ("window rule (old default)", ContextPolicy(compact_budget="off")),
    ]
    out += [(f"fixed {n // 1000}K", ContextPolicy(compact_budget=n)) for n in fixed]
    return out


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| model | way | bill USD | vs unmanaged | vs window rule | calls | peak context "
        "| compactions | facts retained |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    base = {
        r["model"]: r["bill_usd"]
        for r in rows
        if r["way"] == "unmanaged" and r["overflowed_at_turn"] is None
    }
    rule = {r["model"]: r["bill_usd"] for r in rows if r["way"].startswith("window rule")}
    for r in rows:
        vs_base = f"{r['bill_usd'] / base[r['model']]:.0%}" if base.get(r["model"]) else "-"
        vs_rule = f"{r['bill_usd'] / rule[r['model']]:.0%}" if rule.get(r["model"]) else "-"
        facts = r["facts_retained"]
        if r["overflowed_at_turn"] is not None:
            facts += f" (overflowed the window at turn {r['overflowed_at_turn']})"
        lines.append(
            f"| {r['model']} | {r['way']} | {r['bill_usd']:.2f} | {vs_base} | {vs_rule} | "
            f"{r['calls']} | {r['peak_context']:,} | {r['compactions']} | {facts} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Cost and retention against the budget (fixed budgets; defaults marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cost_ax, keep_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for model, color in (("kimi-k3", "tab:blue"), ("kimi-k2.6", "tab:orange")):
        mine = [r for r in rows if r["model"] == model]
        base = next((r["bill_usd"] for r in mine if r["way"].startswith("window rule")), None)
        # a fixed budget above the window rule is the window rule: plot where it fired
        fixed = sorted((r["budget_tokens"], r) for r in mine if r["way"].startswith("fixed"))
        if not fixed or not base:
            continue
        xs = [x // 1000 for x, _ in fixed]
        cost_ax.plot(xs, [r["bill_usd"] / base for _, r in fixed], "o-", color=color, label=model)
        keep_ax.plot(
            xs, [int(r["facts_retained"].split("/")[0]) for _, r in fixed], "o-", color=color
        )
        default = next(r for r in mine if r["way"] == "defaults")
        budget = default.get("budget_tokens")
        if budget:
            cost_ax.plot(
                [budget / 1000], [default["bill_usd"] / base], "*", ms=14, color=color,
                label=f"{model} defaults (price budget)",
            )  # fmt: skip
            keep_ax.plot(
                [budget / 1000], [int(default["facts_retained"].split("/")[0])], "*", ms=14,
                color=color,
            )  # fmt: skip
    cost_ax.set_xlabel("budget (K tokens of context before a compaction)")
    cost_ax.set_ylabel("bill / bill with the window rule (old default)")
    cost_ax.set_title("Cost vs budget (100-turn session)")
    cost_ax.legend(fontsize=8)
    keep_ax.set_xlabel("budget (K tokens)")
    keep_ax.set_ylabel("planted facts retained (of 100)")
    keep_ax.set_title("Retention vs budget")
    keep_ax.set_ylim(0, 105)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every way on kimi-k3 and kimi-k2.6; print JSON lines and a Markdown table."""
    from langchain_kimi_context.context.compaction.trigger import budget_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="40 turns, fewer budgets")
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    args = parser.parse_args(argv)
    turns = args.turns or (40 if args.quick else 100)
    rows: list[dict[str, Any]] = []
    with KimiEmulator() as emu:
        for model in ("kimi-k3", "kimi-k2.6"):
            profile = get_profile(model)
            for name, policy in ways(model, args.quick):
                result = run_session(emu, model, policy, way=name, turns=turns)
                row = result.row()
                if policy is not None:
                    row["budget_tokens"] = budget_for(profile.context_window, policy, profile)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n## {turns}-turn session, one ~5K-token tool result per turn\n")
    print(_table(rows))
    if args.plot is not None:
        plot(rows, args.plot)
        print(f"\nplot written to {args.plot}")
    return rows


if __name__ == "__main__":
    main()
