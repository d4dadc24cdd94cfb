"""Checkpoint storage and per-turn time: create_kimi_agent vs a plain LangGraph agent.

Same scripted workload for both: N turns, each a user message of ~T tokens and a model
reply of ~T tokens (deterministic prose), one SQLite file per agent. The model is an
in-process scripted chat model (no HTTP), and the time spent inside it is subtracted
from each turn, so the per-turn time is the agent's own overhead: checkpoint writes and
loads, the context pipeline, compaction bookkeeping.

* plain: ``langgraph.prebuilt.create_react_agent`` (``add_messages`` + ``SqliteSaver``).
* kimi: ``create_kimi_agent`` (delta-channel log, compressed ``KimiSqliteSaver``, every
  node checkpointed, compaction when the window fills).

Two workloads:

* ``--tokens 4000`` (default): ~4K-token user messages and replies (target: DB <= 2x raw).
* ``--short``: a one-line user message (~25 tokens) and a ~60-token reply per turn,
  150 turns (targets: DB <= 5x raw; the 10 newest states of the session read in
  < 200 ms; the whole history read in linear time: the time per state does not grow
  with the number of states read).

Run: ``.venv/bin/python benchmarks/bench_storage.py [--turns 100] [--tokens 4000] [--short]``
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.sqlite import SqliteSaver

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_kimi_context import AgentSettings, create_kimi_agent  # noqa: E402

_rng = random.Random(42)
_VOCAB = [
    "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_rng.randint(2, 10)))
    for _ in range(5000)
]


def prose(seed: int, tokens: int) -> str:
    """Deterministic text of about ``tokens`` tokens (4 chars per token)."""
    rng = random.Random(seed)
    words: list[str] = []
    chars = 0
    while chars < tokens * 4:
        w = rng.choice(_VOCAB)
        if rng.random() < 0.08:
            w += "."
        words.append(w)
        chars += len(w) + 1
    return " ".join(words)


class ScriptedModel(BaseChatModel):
    """Replies with deterministic prose; records the time spent inside it."""

    reply_tokens: int = 4000
    calls: int = 0
    busy_s: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "scripted-bench"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        started = time.perf_counter()
        self.calls += 1
        first = messages[0]
        if first.type == "system" and "summar" in str(first.content).lower():
            text = "## Current Task\n" + prose(self.calls, 300)  # a compaction summary
        else:
            text = prose(10_000 + self.calls, self.reply_tokens)
        result = ChatResult(generations=[ChatGeneration(message=AIMessage(text))])
        self.busy_s += time.perf_counter() - started
        return result


def settled_bytes(path: Path) -> int:
    """Database bytes after folding the WAL into the main file (main + WAL sizes)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))


def run(
    name: str,
    build: Callable[[ScriptedModel, Path], Any],
    turns: int,
    tokens: int,
    workdir: Path,
    user_tokens: int | None = None,
) -> dict[str, Any]:
    model = ScriptedModel(reply_tokens=tokens)
    db = workdir / f"{name}.sqlite"
    agent = build(model, db)
    cfg = {"configurable": {"thread_id": "bench"}}
    per_turn: list[float] = []
    sizes: dict[int, int] = {}
    raw = 0
    for turn in range(1, turns + 1):
        text = prose(turn, tokens if user_tokens is None else user_tokens)
        busy = model.busy_s
        started = time.perf_counter()
        out = agent.invoke({"messages": [HumanMessage(text)]}, cfg)
        elapsed = time.perf_counter() - started - (model.busy_s - busy)
        per_turn.append(elapsed * 1000)
        raw += len(text.encode()) + len(str(out["messages"][-1].content).encode())
        if turn in (1, 10, 25, 50, 75, 100, turns):
            sizes[turn] = settled_bytes(db)  # outside the timed region
    final = settled_bytes(db)
    history = read_history(build, db)
    return {
        "name": name,
        "raw": raw,
        "db": final,
        "sizes": sizes,
        "per_turn": per_turn,
        "messages": len(out["messages"]),
        **history,
    }


def read_history(build: Callable[[ScriptedModel, Path], Any], db: Path) -> dict[str, Any]:
    """Browse the session's history in a fresh agent (a new process: nothing cached)."""
    cfg = {"configurable": {"thread_id": "bench"}}
    agent = build(ScriptedModel(), db)
    started = time.perf_counter()
    newest = list(agent.get_state_history(cfg, limit=10))
    newest_ms = (time.perf_counter() - started) * 1000
    agent = build(ScriptedModel(), db)
    marks: list[tuple[int, float]] = []
    started = time.perf_counter()
    for n, _state in enumerate(agent.get_state_history(cfg, limit=1000), 1):
        if n in (100, 250, 500, 1000):
            marks.append((n, (time.perf_counter() - started) * 1000))
    total = n if marks or newest else 0
    return {"newest_ms": newest_ms, "history_marks": marks, "states": total}


def build_plain(model: ScriptedModel, db: Path) -> Any:
    from langgraph.prebuilt import create_react_agent

    conn = sqlite3.connect(db, check_same_thread=False)
    return create_react_agent(model, tools=[], checkpointer=SqliteSaver(conn))


def build_kimi(model: ScriptedModel, db: Path) -> Any:
    return create_kimi_agent(model, [], db_path=db, settings=AgentSettings())


def build_kimi_unpruned(model: ScriptedModel, db: Path) -> Any:
    from langchain_kimi_context.agent import open_sqlite_checkpointer

    saver = open_sqlite_checkpointer(db, prune_turns=False)
    return create_kimi_agent(model, [], checkpointer=saver, settings=AgentSettings())


def build_kimi_uncompressed(model: ScriptedModel, db: Path) -> Any:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from langchain_kimi_context.agent import KimiSqliteSaver

    conn = sqlite3.connect(db, check_same_thread=False)
    saver = KimiSqliteSaver(conn, serde=JsonPlusSerializer())
    saver.setup()
    return create_kimi_agent(model, [], checkpointer=saver, settings=AgentSettings())


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:8.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=4000, help="tokens per message")
    parser.add_argument("--only", choices=["plain", "kimi", "kimi-raw", "kimi-full"], default=None)
    parser.add_argument(
        "--unpruned", action="store_true", help="also run kimi without turn pruning"
    )
    parser.add_argument(
        "--short", action="store_true", help="one-line user messages, ~60-token replies"
    )
    parser.add_argument(
        "--uncompressed", action="store_true", help="also run kimi without blob compression"
    )
    args = parser.parse_args()
    user_tokens = None
    if args.short:
        args.tokens, user_tokens = 60, 25
        if args.turns == 100:
            args.turns = 150
    workdir = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    results = []
    variants: list[tuple[str, Callable[[ScriptedModel, Path], Any]]] = [
        ("plain", build_plain),
        ("kimi", build_kimi),
    ]
    if args.uncompressed or args.only == "kimi-raw":
        variants.append(("kimi-raw", build_kimi_uncompressed))
    if args.unpruned or args.only == "kimi-full":
        variants.append(("kimi-full", build_kimi_unpruned))
    for name, build in variants:
        if args.only and args.only != name:
            continue
        results.append(run(name, build, args.turns, args.tokens, workdir, user_tokens))
    user = args.tokens if user_tokens is None else user_tokens
    print(f"\n{args.turns} turns, ~{user} tokens per user message, ~{args.tokens} per reply")
    print(
        f"{'agent':<8}{'raw transcript':>16}{'DB bytes':>14}{'DB/raw':>9}"
        f"{'turns 1-10 ms':>15}{'last 10 ms':>12}{'ratio':>8}"
    )
    for r in results:
        first = statistics.median(r["per_turn"][:10])
        last = statistics.median(r["per_turn"][-10:])
        print(
            f"{r['name']:<8}{fmt_bytes(r['raw']):>16}{fmt_bytes(r['db']):>14}"
            f"{r['db'] / r['raw']:>8.2f}x{first:>15.1f}{last:>12.1f}{last / first:>7.2f}x"
        )
    print("(per-turn times: medians; model time excluded; the machine's load adds noise)")
    print("\nDB size by turn:")
    for r in results:
        series = ", ".join(f"t{t}: {v / 1e6:.1f} MB" for t, v in r["sizes"].items())
        print(f"  {r['name']:<6} {series}")
    print("\nper-turn agent time (model time excluded), ms at turns 1/10/25/50/75/100:")
    for r in results:
        pts = [i for i in (1, 10, 25, 50, 75, 100) if i <= len(r["per_turn"])]
        series = ", ".join(f"t{i}: {r['per_turn'][i - 1]:.1f}" for i in pts)
        print(f"  {r['name']:<6} {series}")
    print("\nhistory browsing in a fresh agent (get_state_history):")
    for r in results:
        marks = ", ".join(
            f"{n} states {ms:.0f} ms ({ms / n:.2f} ms/state)" for n, ms in r["history_marks"]
        )
        print(
            f"  {r['name']:<6} {r['states']} states kept; 10 newest: {r['newest_ms']:.0f} ms; "
            f"{marks}"
        )
    print(f"\n(files in {workdir})")


if __name__ == "__main__":
    main()
