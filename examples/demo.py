"""The main demo: a long Kimi coding session that stays cheap and unbreakable.

What it shows, in one run (about 20 s offline):

1. ``create_kimi_agent`` with two tools, checkpointed in a SQLite file.
2. A multi-turn refactoring session whose history grows by a large file read each turn:
   every request goes through the pipeline (guard, sanitize, repair, limit, truncate),
   the provider's prefix cache keeps hitting, and the session is compacted when it nears
   the (deliberately small) window, without ever losing the full record.
3. Transient provider failures (a 429 and a 500 injected on the emulator) retried
   transparently.
4. A "crash": the agent object is thrown away, a new process-like agent is built on the
   same database, and the session continues where it stopped.
5. A bill: prompt tokens, the cached share, cost with caching vs every token at the
   cache-miss price, compactions, and database size vs the raw transcript.

Offline by default: it starts the bundled Kimi API emulator (a real HTTP server on
127.0.0.1). With ``MOONSHOT_API_KEY`` set it talks to the real Kimi API instead
(``MOONSHOT_BASE_URL`` and ``KIMI_MODEL`` are honoured; it costs a few cents).

Run: ``make demo`` or ``python examples/demo.py [--turns N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from langchain_kimi_context import (
    AgentSettings,
    ContextPolicy,
    KimiChatModel,
    RetrySettings,
    create_kimi_agent,
    get_profile,
)
from langchain_kimi_context.testing import KimiEmulator

SYSTEM_PROMPT = (
    "You are a careful senior Python engineer refactoring the `shop` package. "
    "Read files before changing them, run the tests after every change, keep the "
    "public API stable and answer briefly."
)
MODULES = ["pricing", "cart", "orders", "invoices", "discounts", "shipping", "tax", "users"]


def read_file(path: str) -> str:
    """Read a source file of the project.

    Args:
        path: Path of the file, e.g. "shop/pricing.py".
    """
    stem = Path(path).stem or "module"
    lines = [f"# {path}", "from __future__ import annotations", ""]
    for i in range(45):
        lines += [
            f"def {stem}_rule_{i}(order, rate=0.{i % 9 + 1}):",
            f'    """Apply pricing rule {i} of {stem}."""',
            "    total = sum(item.price * item.qty for item in order.items) * (1 + rate)",
            f"    return round(total - {i} * order.discount, 2)",
            "",
        ]
    return "\n".join(lines)


def run_tests(target: str) -> str:
    """Run the pytest suite of one module of the project.

    Args:
        target: Module name, e.g. "pricing".
    """
    return (
        f"collected 24 items\ntests/test_{target}.py ......F.....\n"
        f"FAILED tests/test_{target}.py::test_rounding - AssertionError: 10.0 != 9.99\n"
        "1 failed, 23 passed in 0.42s"
    )


def user_turn(i: int) -> str:
    """The i-th request of the scripted refactoring session (natural language)."""
    module = MODULES[i % len(MODULES)]
    return f'Read the file "shop/{module}.py" and tell me what to refactor first.'


@contextlib.contextmanager
def kimi_endpoint() -> Iterator[tuple[dict[str, Any], KimiEmulator | None]]:
    """Yield model settings for the real API when a key is set, else the emulator."""
    model_name = os.environ.get("KIMI_MODEL", "kimi-k2.6")
    if os.environ.get("MOONSHOT_API_KEY"):
        yield {"model": model_name}, None
        return
    with KimiEmulator() as emu:
        yield {"model": model_name, "base_url": emu.base_url, "api_key": emu.api_key}, emu


def transcript_bytes(messages: list[BaseMessage]) -> int:
    """Bytes of the raw transcript: every message's text and tool-call arguments."""
    total = 0
    for m in messages:
        total += len(str(m.content).encode())
        if isinstance(m, AIMessage):
            total += sum(len(str(tc["args"]).encode()) for tc in m.tool_calls)
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the demo and return its numbers (used by the smoke test).

    Args:
        argv: Command-line arguments (``--turns N``, ``--window N``, ``--db PATH``).

    Returns:
        The numbers printed at the end.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=14, help="user turns to run")
    parser.add_argument(
        "--window", type=int, default=40_000, help="context window the policy enforces"
    )
    parser.add_argument("--db", default=None, help="SQLite file (default: a temp dir)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # keep the output readable (tokenizer fallback etc.)

    # a temp dir only when no --db was given (kept: the printed path can be inspected)
    db_path = (
        Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="kimi-demo-")) / "session.sqlite"
    )
    # A small window so the demo compacts within a few turns; real sessions use the
    # model's 256K window from its profile.
    policy = ContextPolicy(context_window=args.window, compact_keep_turns=2)
    settings = AgentSettings(retry=RetrySettings(initial_interval=0.05, max_interval=0.2))
    config = {"configurable": {"thread_id": "refactor-shop"}}

    with kimi_endpoint() as (model_kwargs, emu):
        where = "bundled emulator " + emu.base_url if emu else "the real Kimi API"
        print(f"Kimi endpoint: {where}  model: {model_kwargs['model']}")
        print(f"Checkpoints:   {db_path}\n")
        if emu is not None:  # transient failures the agent must absorb
            emu.faults.rate_limit(at=5, retry_after=0.05)
            emu.faults.server_error(at=11)

        def build_agent() -> Any:
            model = KimiChatModel(**model_kwargs)
            return create_kimi_agent(
                model,
                [read_file, run_tests],
                system_prompt=SYSTEM_PROMPT,
                policy=policy,
                settings=settings,
                db_path=db_path,
            )

        agent = build_agent()
        crash_at = args.turns // 2
        header = (
            f"{'turn':>4} {'prompt':>8} {'cached':>8} {'hit%':>5} {'msgs':>5} {'compactions':>11}"
        )
        print(header)
        print("-" * len(header))
        prev: dict[str, Any] = {}
        t0 = time.perf_counter()
        for turn in range(args.turns):
            if turn == crash_at:
                # Simulated crash: the process state is gone, only the database remains.
                del agent
                agent = build_agent()
                print(f"{'':>4} -- agent rebuilt from {db_path.name}: session continues --")
            state = agent.invoke({"messages": [HumanMessage(user_turn(turn))]}, config)
            usage = state.get("usage", {})
            prompt = usage.get("input_tokens", 0) - prev.get("input_tokens", 0)
            cached = usage.get("cache_read_tokens", 0) - prev.get("cache_read_tokens", 0)
            prev = dict(usage)
            share = 100 * cached / prompt if prompt else 0.0
            print(
                f"{turn + 1:>4} {prompt:>8,} {cached:>8,} {share:>5.1f} "
                f"{len(state['messages']):>5} {len(state.get('compactions', [])):>11}"
            )
        elapsed = time.perf_counter() - t0

        final = agent.get_state(config).values
        log: list[BaseMessage] = final["messages"]
        usage = final.get("usage", {})
        profile = get_profile(model_kwargs["model"])
        price = profile.pricing
        prompt_total = int(usage.get("input_tokens", 0))
        cached_total = int(usage.get("cache_read_tokens", 0))
        output_total = int(usage.get("output_tokens", 0))
        cost = price.cost(
            prompt_tokens=prompt_total, cached_tokens=cached_total, output_tokens=output_total
        )
        cost_uncached = price.cost(
            prompt_tokens=prompt_total, cached_tokens=0, output_tokens=output_total
        )
        tool_results = sum(isinstance(m, ToolMessage) for m in log)
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fold the WAL into the file
        db_bytes = db_path.stat().st_size
        raw = transcript_bytes(log)
        numbers = {
            "turns": args.turns,
            "model_calls": int(usage.get("calls", 0)),
            "prompt_tokens": prompt_total,
            "cached_tokens": cached_total,
            "cached_share": cached_total / prompt_total if prompt_total else 0.0,
            "cost": cost,
            "cost_uncached": cost_uncached,
            "compactions": len(final.get("compactions", [])),
            "log_messages": len(log),
            "tool_results": tool_results,
            "db_bytes": db_bytes,
            "transcript_bytes": raw,
        }
        print(f"\n{args.turns} turns, {numbers['model_calls']} model calls in {elapsed:.1f} s")
        print(
            f"prompt tokens {prompt_total:,}, served from cache {cached_total:,} "
            f"({100 * numbers['cached_share']:.1f}%)"
        )
        print(
            f"cost {cost:.4f} {price.currency} (every prompt token at the miss price: "
            f"{cost_uncached:.4f}; saved {100 * (1 - cost / cost_uncached):.0f}%)"
            if cost_uncached
            else "cost: n/a"
        )
        print(
            f"compactions {numbers['compactions']}: the model saw a summary, the log still "
            f"holds all {len(log)} messages ({tool_results} tool results)"
        )
        if emu is not None:
            faults = [r for r in emu.chat_requests if r.status >= 400]
            print(f"provider failures absorbed by retries: {len(faults)} (429, 500)")
        print(
            f"database {db_bytes / 1e6:.2f} MB for a {raw / 1e6:.2f} MB transcript "
            "(grows linearly: docs/benchmarks/storage.md)"
        )
        return numbers


if __name__ == "__main__":
    main()
