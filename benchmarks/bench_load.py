"""Load: many concurrent sessions of ``create_kimi_agent`` on SQLite and on Postgres.

Each session is a thread of its own doing 10 turns (``ainvoke``, one after the other);
16 and 64 sessions run at once against the Kimi emulator (real HTTP on 127.0.0.1). Per
turn the benchmark records the wall time and the time spent inside the model call (a
callback on the chat model), so the *overhead* is the agent's own time: checkpoint
reads and writes, the context pipeline, turn pruning, waiting for the saver.

Printed per backend and concurrency, for ``create_kimi_agent`` ("kimi") and for the plain
LangGraph way ("plain": ``create_react_agent`` on ``AsyncSqliteSaver`` /
``AsyncPostgresSaver``, same model): turns/s, p50/p99 per-turn overhead, errors and
lost turns (a turn whose messages are not in the thread afterwards; must be 0).

Run: ``.venv/bin/python benchmarks/bench_load.py [--sessions 16 64] [--turns 10]``
(Postgres from ``KIMI_TEST_POSTGRES_DSN``, default
``postgresql://postgres@127.0.0.1:5432/test``; skipped when unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_kimi_context import KimiChatModel, create_kimi_agent  # noqa: E402
from langchain_kimi_context.testing import KimiEmulator  # noqa: E402

DSN = os.environ.get("KIMI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class ModelTimer(BaseCallbackHandler):
    """Sums the time spent inside chat-model calls, per thread."""

    def __init__(self) -> None:
        self.started: dict[Any, tuple[str, float]] = {}
        self.busy: dict[str, float] = {}

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: Any, **kw: Any
    ) -> None:
        thread = str((kw.get("metadata") or {}).get("thread_id", ""))
        self.started[run_id] = (thread, time.perf_counter())

    def on_llm_end(self, response: Any, *, run_id: Any, **kw: Any) -> None:
        thread, t0 = self.started.pop(run_id, ("", time.perf_counter()))
        self.busy[thread] = self.busy.get(thread, 0.0) + time.perf_counter() - t0

    def on_llm_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
        self.on_llm_end(None, run_id=run_id)


async def session(agent: Any, timer: ModelTimer, thread: str, turns: int) -> dict[str, Any]:
    cfg = {"configurable": {"thread_id": thread}, "callbacks": [timer]}
    overheads: list[float] = []
    errors = 0
    for turn in range(turns):
        busy = timer.busy.get(thread, 0.0)
        started = time.perf_counter()
        try:
            await agent.ainvoke({"messages": [HumanMessage(f"@say {thread} turn {turn}")]}, cfg)
        except Exception:
            errors += 1
            continue
        elapsed = time.perf_counter() - started
        overheads.append((elapsed - (timer.busy.get(thread, 0.0) - busy)) * 1000)
    return {"overheads": overheads, "errors": errors}


async def run(agent: Any, sessions: int, turns: int) -> dict[str, Any]:
    timer = ModelTimer()
    threads = [f"load-{uuid.uuid4().hex[:8]}" for _ in range(sessions)]
    started = time.perf_counter()
    results = await asyncio.gather(*(session(agent, timer, t, turns) for t in threads))
    wall = time.perf_counter() - started
    lost = 0
    for thread in threads:
        state = await agent.aget_state({"configurable": {"thread_id": thread}})
        texts = [m.content for m in state.values.get("messages", [])]
        lost += sum(1 for turn in range(turns) if f"{thread} turn {turn}" not in texts)
    overheads = sorted(o for r in results for o in r["overheads"])
    return {
        "turns_s": len(overheads) / wall,
        "p50": statistics.median(overheads) if overheads else float("nan"),
        "p99": overheads[min(len(overheads) - 1, int(len(overheads) * 0.99))]
        if overheads
        else float("nan"),
        "errors": sum(r["errors"] for r in results),
        "lost": lost,
    }


def postgres_url() -> tuple[str, Any] | None:
    try:
        import psycopg
    except ImportError:
        return None
    try:
        conn = psycopg.connect(DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        print(f"(Postgres skipped: {exc})")
        return None
    schema = f"kimi_load_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in DSN else "?"
    return f"{DSN}{sep}options=-csearch_path%3D{schema}", (conn, schema)


async def plain_agent(model: Any, backend: str, target: str, stack: AsyncExitStack) -> Any:
    """``create_react_agent`` on LangGraph's own async saver for the same backend."""
    from langgraph.prebuilt import create_react_agent

    if backend == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        saver: Any = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(target))
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            target, max_size=16, kwargs={"autocommit": True, "prepare_threshold": 0}, open=False
        )
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
    return create_react_agent(model, tools=[], checkpointer=saver)


async def main_async(args: argparse.Namespace) -> None:
    with KimiEmulator() as emu:
        model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
        workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
        backends: list[tuple[str, str, str]] = [
            ("sqlite", "kimi", str(workdir / "kimi.sqlite")),
            ("sqlite", "plain", str(workdir / "plain.sqlite")),
        ]
        pg = postgres_url()
        if pg is not None:
            backends += [("postgres", "kimi", pg[0]), ("postgres", "plain", pg[0])]
        try:
            for backend, kind, target in backends:
                async with AsyncExitStack() as stack:
                    if kind == "kimi":
                        agent = create_kimi_agent(model, checkpointer=target)
                        if backend == "postgres":
                            agent.checkpointer.max_size = 16
                            stack.push_async_callback(agent.checkpointer.aclose)
                    else:
                        agent = await plain_agent(model, backend, target, stack)
                    for n in args.sessions:
                        r = await run(agent, n, args.turns)
                        print(
                            f"{backend:<9}{kind:<7}{n:>9}{r['turns_s']:>10.1f}{r['p50']:>11.1f}"
                            f"{r['p99']:>11.1f}{r['errors']:>8}{r['lost']:>6}",
                            flush=True,
                        )
        finally:
            if pg is not None:
                conn, schema = pg[1]
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    print(f"{args.turns} turns per session, sessions at once; overhead = turn minus model time")
    print(
        f"{'backend':<9}{'agent':<7}{'sessions':>9}{'turns/s':>10}{'p50 ms':>11}{'p99 ms':>11}"
        f"{'errors':>8}{'lost':>6}"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
