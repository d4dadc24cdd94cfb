"""Benchmark: context caching over a 30-turn session, replayed on the Kimi emulator.

The session has a stable system prompt (~2.5K tokens) and five tools, and a growing
history: every third turn the model calls a tool and the tool result joins the history.
The same script runs, in one process, with:

* ``KimiChatModel(context_cache="auto")`` on kimi-k2.6 (automatic prefix caching: stable
  canonical prefix + ``prompt_cache_key``),
* ``KimiChatModel(context_cache="off")`` (payload sent as built, no cache key),
* plain ``langchain_openai.ChatOpenAI`` (the usual LangChain way),
* optionally (``--explicit``) ``KimiChatModel`` on moonshot-v1-128k with the explicit
  Context Caching API vs ``context_cache="off"``.

Tokens and cache hits are read from the emulator's request log (the server's own
``usage``), so every configuration is measured the same way. Costs use the model profile's
prices; "no-cache cost" bills every prompt token at the cache-miss price.

Run: ``.venv/bin/python benchmarks/bench_caching.py [--turns 30] [--explicit]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.caching import CachePolicy, read_cached_tokens
from langchain_kimi_context.profiles import get_profile
from langchain_kimi_context.testing import KimiEmulator

K2 = "kimi-k2.6"
V1 = "moonshot-v1-128k"
SYSTEM = "You are a meticulous coding agent working in a large repository.\n" + "\n".join(
    f"Rule {i}: keep functions small, typed and documented; never mutate inputs; "
    f"explain each change in one sentence."
    for i in range(120)
)


@tool
def read_file(path: str) -> str:
    """Read a file of the repository."""
    return "\n".join(f"{path}:{n}: def f_{n}(x: int) -> int: return x + {n}" for n in range(40))


@tool
def write_file(path: str, text: str) -> str:
    """Write a file of the repository."""
    return f"wrote {len(text)} chars to {path}"


@tool
def run_tests(target: str) -> str:
    """Run the tests of a target."""
    return f"{target}: 12 passed"


@tool
def grep(pattern: str, path: str = ".") -> str:
    """Search files for a pattern."""
    return f"{path}/a.py:3: {pattern}"


@tool
def list_dir(path: str) -> str:
    """List a directory."""
    return "a.py\nb.py\nc.py"


TOOLS = [read_file, write_file, run_tests, grep, list_dir]
TOOLS_BY_NAME = {t.name: t for t in TOOLS}


ModelFactory = Callable[[KimiEmulator], Callable[[], BaseChatModel]]


@dataclass
class RunResult:
    name: str
    model: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    extra_cost: float = 0.0  # explicit cache charges, converted to the token currency
    extra_note: str = ""

    def totals(self, *, from_turn: int = 1) -> tuple[int, int]:
        calls = [c for c in self.calls if c.get("turn", 1) >= from_turn]
        return sum(c["prompt"] for c in calls), sum(c["cached"] for c in calls)


def _call_usage(emu: KimiEmulator, start: int) -> list[dict[str, Any]]:
    out = []
    for record in emu.requests[start:]:
        if record.path.endswith("/chat/completions") and record.status == 200 and record.usage:
            usage = record.usage
            out.append({"prompt": int(usage["prompt_tokens"]), "cached": read_cached_tokens(usage)})
    return out


def replay(
    emu: KimiEmulator,
    make_model: Callable[[], BaseChatModel],
    name: str,
    model_name: str,
    turns: int,
    *,
    rotate_tools: bool = False,
) -> RunResult:
    """Replay the scripted session; return per-call server usage."""
    model = make_model()
    bound = model.bind_tools(TOOLS)
    history: list[BaseMessage] = [SystemMessage(SYSTEM)]
    start = len(emu.requests)
    turn_of_call: list[int] = []
    for turn in range(1, turns + 1):
        if turn % 3 == 0:
            directive = f'@call read_file {{"path": "src/module_{turn}.py"}}'
        else:
            directive = "@reply 150"
        history.append(HumanMessage(f"{directive}\nStep {turn}: continue the refactoring."))
        if rotate_tools:  # e.g. tools gathered from several MCP servers, order varies
            shift = turn % len(TOOLS)
            bound = model.bind_tools(TOOLS[shift:] + TOOLS[:shift])
        while True:
            reply = bound.invoke(history)
            turn_of_call.append(turn)
            assert isinstance(reply, AIMessage)
            history.append(reply)
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                result = TOOLS_BY_NAME[call["name"]].invoke(call["args"])
                history.append(ToolMessage(str(result), tool_call_id=str(call["id"])))
    result = RunResult(name=name, model=model_name, calls=_call_usage(emu, start))
    for call, turn in zip(result.calls, turn_of_call, strict=False):
        call["turn"] = turn
    ledger = getattr(model, "ledger", None)
    if ledger is not None:
        totals = ledger.total()
        pricing = get_profile(model_name).pricing
        policy = CachePolicy()
        for currency, amount in totals.cache_cost.items():
            # cache charges are in the cache API's currency; convert with CachePolicy rates
            result.extra_cost += policy.to_usd(amount, currency) if pricing.currency == "USD" else 0
            result.extra_note = (
                f"incl. cache API charges {amount:.4f} {currency} "
                f"(x{policy.usd_per_unit.get(currency, 1.0)} USD)"
            )
    close = getattr(model, "close", None)
    if close is not None:
        close()
    return result


def cost(result: RunResult, *, no_cache: bool = False, explicit: bool = False) -> float:
    pricing = get_profile(result.model).pricing
    total = 0.0
    for call in result.calls:
        cached = 0 if no_cache else call["cached"]
        if explicit and cached:
            total += pricing.cost(
                prompt_tokens=call["prompt"] - cached, cached_tokens=0, output_tokens=0
            )
        else:
            total += pricing.cost(
                prompt_tokens=call["prompt"], cached_tokens=cached, output_tokens=0
            )
    return total + (0.0 if no_cache else result.extra_cost)


# Plain ChatOpenAI cannot run a thinking tool loop on kimi-k2.6 (it drops
# reasoning_content, which the API requires back), so every row runs with thinking off:
# the rows then differ only in how they cache.
NO_THINKING = {"thinking": {"type": "disabled"}}


def kimi(emu: KimiEmulator, model: str, mode: str) -> Callable[[], BaseChatModel]:
    return lambda: KimiChatModel(
        model=model,
        base_url=emu.base_url,
        api_key=emu.api_key,
        context_cache=mode,  # type: ignore[arg-type]
        session_id=f"bench-{mode}",
        max_tokens=512,
        thinking=False,
    )


def plain(emu: KimiEmulator, model: str) -> Callable[[], BaseChatModel]:
    return lambda: ChatOpenAI(
        model=model,
        base_url=emu.base_url,
        api_key=emu.api_key,
        max_tokens=512,
        max_retries=0,
        extra_body=NO_THINKING,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--explicit", action="store_true", help="also run moonshot-v1 explicit")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    runs: list[tuple[RunResult, bool]] = []
    configs: list[tuple[str, str, ModelFactory, bool, bool]] = [
        ("KimiChatModel auto", K2, lambda e: kimi(e, K2, "auto"), False, False),
        ("KimiChatModel off", K2, lambda e: kimi(e, K2, "off"), False, False),
        ("ChatOpenAI (plain)", K2, lambda e: plain(e, K2), False, False),
        ("KimiChatModel auto", K2, lambda e: kimi(e, K2, "auto"), False, True),
        ("KimiChatModel off", K2, lambda e: kimi(e, K2, "off"), False, True),
        ("ChatOpenAI (plain)", K2, lambda e: plain(e, K2), False, True),
    ]
    if args.explicit:
        configs += [
            ("KimiChatModel explicit", V1, lambda e: kimi(e, V1, "auto"), True, False),
            ("KimiChatModel off", V1, lambda e: kimi(e, V1, "off"), False, False),
        ]
    for name, model_name, factory, explicit, rotate in configs:
        label = name + (" [rotating tools]" if rotate else "")
        # A fresh server per run: no cache carried over. moonshot-v1 (explicit caching) is
        # retired: the emulator's legacy catalog stands in for a host that still serves it.
        catalog = "legacy" if model_name == V1 else "current"
        with KimiEmulator(catalog=catalog) as emu:
            result = replay(emu, factory(emu), label, model_name, args.turns, rotate_tools=rotate)
            runs.append((result, explicit))

    rows = []
    for result, explicit in runs:
        prompt, cached = result.totals()
        prompt2, cached2 = result.totals(from_turn=2)
        rows.append(
            {
                "config": result.name,
                "model": result.model,
                "calls": len(result.calls),
                "prompt_tokens": prompt,
                "cached_tokens": cached,
                "cached_share": cached / prompt if prompt else 0.0,
                "cached_share_from_turn_2": cached2 / prompt2 if prompt2 else 0.0,
                "input_cost_usd": cost(result, explicit=explicit),
                "input_cost_no_cache_usd": cost(result, no_cache=True),
                "note": result.extra_note,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        header = (
            f"{'config':<40} {'model':<21} {'calls':>5} {'prompt tok':>11} {'cached':>10} "
            f"{'share':>6} {'turn>=2':>8} {'input $':>9} {'no-cache $':>10}"
        )
        print(f"{args.turns}-turn session, stable system prompt + {len(TOOLS)} tools")
        print(header)
        print("-" * len(header))
        for row in rows:
            print(
                f"{row['config']:<40} {row['model']:<21} {row['calls']:>5} "
                f"{row['prompt_tokens']:>11,} {row['cached_tokens']:>10,} "
                f"{row['cached_share']:>6.1%} {row['cached_share_from_turn_2']:>8.1%} "
                f"{row['input_cost_usd']:>9.4f} {row['input_cost_no_cache_usd']:>10.4f}"
                + (f"  ({row['note']})" if row["note"] else "")
            )
    auto = rows[0]
    target = 0.85
    ok = auto["cached_share_from_turn_2"] >= target
    print(
        f"\nautomatic mode, turns 2..n: {auto['cached_share_from_turn_2']:.1%} of prompt tokens "
        f"from cache (target >= {target:.0%}): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
