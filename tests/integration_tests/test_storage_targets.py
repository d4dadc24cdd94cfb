"""Storage targets of the default saver on the emulator, asserted as ratios and counts.

* a short-message chat (one-line user message, ~60-token reply) stays <= 5x the raw
  transcript after 150 turns, with one checkpoint per finished turn; ~4K-token
  messages stay <= 2x;
* reading the newest states of a session takes the same number of database round
  trips at turn 30 and at turn 150 (the delta walk is paged, not per checkpoint);
* browsing a 1,000-state history costs the same per state as a 250-state one
  (each parent's history is derived from its child's: linear, not quadratic).
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph

from langchain_kimi_context import KimiChatModel, create_kimi_agent
from langchain_kimi_context.agent.storage import messages_channel, open_sqlite_checkpointer
from langchain_kimi_context.testing import KimiEmulator

_rng = random.Random(7)
_WORDS = [
    "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_rng.randint(2, 9)))
    for _ in range(3000)
]


def _prose(seed: int, tokens: int) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < tokens * 4:
        out.append(rng.choice(_WORDS))
    return " ".join(out)


def _settled(db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(os.path.getsize(f"{db}{s}") for s in ("", "-wal") if os.path.exists(f"{db}{s}"))


def _chat(
    emu: KimiEmulator, db: Path, thread: str, turns: int, tokens: int = 60
) -> tuple[Any, int]:
    model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
    agent = create_kimi_agent(model, db_path=db)
    cfg = {"configurable": {"thread_id": thread}}
    raw = 0
    for turn in range(turns):
        reply = _prose(10_000 + turn, tokens)
        text = f"@say {reply}"  # the one-line user message carries the scripted reply
        out = agent.invoke({"messages": [HumanMessage(text)]}, cfg)
        raw += len(text.encode()) + len(str(out["messages"][-1].content).encode())
    return agent, raw


def _statements(saver: Any) -> list[str]:
    seen: list[str] = []
    saver.conn.set_trace_callback(seen.append)
    return seen


def test_short_chat_stays_small_and_reads_in_constant_round_trips(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    db = tmp_path / "chat.sqlite"
    _short, raw_short = _chat(emulator, db, "short", 30)
    _long, raw = _chat(emulator, db, "long", 150)
    size = _settled(db)
    assert size <= 5 * (raw + raw_short), (size, raw + raw_short)  # both threads in the file
    conn = sqlite3.connect(db)
    kept = conn.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id = 'long'").fetchone()[0]
    conn.close()
    assert kept <= 150 + 12  # one per finished turn + the nodes of the last turn

    costs = {}
    for thread in ("short", "long"):
        model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key="sk-x")
        fresh = create_kimi_agent(model, db_path=db)  # a new process: nothing remembered
        seen = _statements(fresh.checkpointer)
        states = list(fresh.get_state_history({"configurable": {"thread_id": thread}}, limit=10))
        assert len(states) == 10
        costs[thread] = len(seen)
    assert costs["long"] <= costs["short"] + 6, costs  # O(1) in session length, not O(turns)


def test_long_messages_stay_under_twice_the_raw_transcript(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    db = tmp_path / "long.sqlite"
    _agent, raw = _chat(emulator, db, "4k", 20, tokens=4000)  # ~16 KB per message
    assert _settled(db) <= 2 * raw, (_settled(db), raw)


class _S(TypedDict, total=False):
    messages: Annotated[list[Any], messages_channel()]


def test_history_of_1000_states_reads_in_linear_time(tmp_path: Path) -> None:
    g = StateGraph(_S)
    g.add_node("model", lambda s: {"messages": [AIMessage(f"reply {len(s['messages'])}")]})
    g.add_edge(START, "model")
    g.add_edge("model", END)
    saver = open_sqlite_checkpointer(tmp_path / "h.sqlite", prune_turns=False)
    app = g.compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "h"}}
    for i in range(334):  # 3 checkpoints per run: 1,002 states
        app.invoke({"messages": [HumanMessage(f"m{i}")]}, cfg)
    fresh_saver = open_sqlite_checkpointer(tmp_path / "h.sqlite", prune_turns=False)
    fresh = g.compile(checkpointer=fresh_saver)
    seen = _statements(fresh_saver)
    marks = {}
    for n, _state in enumerate(fresh.get_state_history(cfg, limit=1000), 1):
        if n in (250, 1000):
            marks[n] = len(seen)
    assert n == 1000
    # statements per state stay flat: the 750 older states cost what the first 250 did
    per_state_late = (marks[1000] - marks[250]) / 750
    per_state_early = marks[250] / 250
    assert per_state_late <= 1.5 * per_state_early, marks
