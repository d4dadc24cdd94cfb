"""Snapshot cost on a ~200K-token session: RollingSnapshotMemory vs the plain LangGraph way.

Target (issue 8): ``snapshot()`` under 20 ms on a 200K-token session. A snapshot here is
a checkpoint id plus one tiny registry event: nothing of the history is copied. The
plain LangGraph way to mark a point in a thread is ``graph.update_state(...)`` on an
``add_messages`` + ``SqliteSaver`` graph, which loads and re-serialises the whole
history; a copy-based snapshot (``get_state`` + ``update_state`` into a new thread) is
what ``share`` costs and is shown too.

The session is built turn by turn (one checkpoint write per turn, as ``chat`` does) from
deterministic prose; no model is called.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--tokens 200000] [--turns 100]``
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_kimi_context import RollingSnapshotMemory  # noqa: E402

_rng = random.Random(7)
_VOCAB = [
    "".join(_rng.choice("abcdefghijklmnop") for _ in range(_rng.randint(2, 9))) for _ in range(3000)
]


def prose(seed: int, chars: int) -> str:
    """Deterministic text of about ``chars`` characters."""
    rng = random.Random(seed)
    out: list[str] = []
    n = 0
    while n < chars:
        w = rng.choice(_VOCAB)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Run ``fn`` ``repeat`` times; return the durations in ms."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def stats(xs: list[float]) -> str:
    """Median and p95 of ``xs``."""
    xs = sorted(xs)
    return f"median {statistics.median(xs):7.2f} ms   p95 {xs[int(len(xs) * 0.95) - 1]:7.2f} ms"


class _Plain(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tag: str


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Build the sessions, time the operations, print the comparison.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Median milliseconds per operation.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    memory = RollingSnapshotMemory("kimi-k2.6", api_key="sk-bench", db_path=tmp / "m.sqlite")
    sid = memory.create_session(system="You refactor code.")
    probe = prose(-1, 40_000)
    chars_per_token = len(probe) / memory.token_counter.count_text(probe)
    per_msg_chars = int(args.tokens * chars_per_token / (args.turns * 2))
    turns = [
        [HumanMessage(prose(2 * i, per_msg_chars)), AIMessage(prose(2 * i + 1, per_msg_chars))]
        for i in range(args.turns)
    ]
    t0 = time.perf_counter()
    for pair in turns:
        memory.append_messages(sid, pair, enforce_limit=False)
    build_s = time.perf_counter() - t0
    tokens = memory.token_counter.count_messages(memory.log(sid))

    plain = StateGraph(_Plain)
    plain.add_node("noop", lambda s: {})
    plain.add_edge(START, "noop")
    plain.add_edge("noop", END)
    saver = SqliteSaver(sqlite3.connect(str(tmp / "plain.sqlite"), check_same_thread=False))
    graph = plain.compile(checkpointer=saver)
    cfg: Any = {"configurable": {"thread_id": "p"}}
    for pair in turns:
        graph.update_state(cfg, {"messages": pair}, as_node="noop")

    results: dict[str, float] = {}
    rows: list[tuple[str, Callable[[], Any] | None]] = [
        ("kimi snapshot()", lambda: memory.snapshot(sid)),
        ("plain update_state(tag)", lambda: graph.update_state(cfg, {"tag": "x"}, as_node="noop")),
        ("kimi rollback()", None),
        ("kimi share() (copy)", lambda: memory.share(memory.snapshot(sid))),
        ("kimi messages()", lambda: memory.messages(sid)),
    ]
    snap = memory.snapshot(sid)
    print(
        f"session: {tokens:,} tokens in {len(memory.log(sid)):,} messages "
        f"({args.turns} turns, built in {build_s:.1f} s)"
    )
    for name, fn in rows:
        if fn is None:

            def fn() -> None:
                memory.rollback(sid, snap)

        repeat = 5 if "share" in name else args.repeat
        if "share" in name:
            memory.max_sessions = 10_000
        xs = timed(fn, repeat)
        results[name] = statistics.median(xs)
        print(f"{name:26} {stats(xs)}")
    ok = results["kimi snapshot()"] < 20
    print(f"target snapshot < 20 ms on a ~200K-token session: {'met' if ok else 'MISSED'}")
    return results


if __name__ == "__main__":
    main()
