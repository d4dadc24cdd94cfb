"""Storage of the agent: the delta-channel reducer, the compressed caching saver."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages

from langchain_kimi_context import KimiConfigurationError
from langchain_kimi_context.agent.storage import (
    DB_ENV_VAR,
    KimiSqliteSaver,
    default_checkpoint_path,
    fold_messages,
    messages_channel,
    open_sqlite_checkpointer,
    prune_after_run,
)

# ----------------------------------------------------------------- fold_messages --

_op = st.one_of(
    st.tuples(st.just("new"), st.text(max_size=5)),
    st.tuples(st.just("new_id"), st.integers(0, 6)),
    st.tuples(st.just("remove"), st.integers(0, 6)),
    st.tuples(st.just("remove_all"), st.just(0)),
)


def _writes(ops: list[tuple[str, Any]]) -> list[Any]:
    """Turn ops into writes that are valid when applied in order."""
    present: list[str] = []
    writes: list[Any] = []
    for i, (kind, arg) in enumerate(ops):
        if kind == "new":
            writes.append(HumanMessage(str(arg)))
        elif kind == "new_id":
            mid = f"m{arg}"
            writes.append(AIMessage(f"v{i}", id=mid))
            if mid not in present:
                present.append(mid)
        elif kind == "remove" and present:
            mid = present.pop(arg % len(present))
            writes.append(RemoveMessage(id=mid))
        elif kind == "remove_all":
            writes.append(RemoveMessage(id=REMOVE_ALL_MESSAGES))
            present.clear()
    return writes


def _key(msgs: list[Any]) -> list[tuple[str, str, Any]]:
    return [(m.type, m.id, m.content) for m in msgs]


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=25), st.integers(0, 25))
def test_fold_is_batching_invariant(ops: list[tuple[str, Any]], cut: int) -> None:
    writes = _writes(ops)
    cut = min(cut, len(writes))
    once = fold_messages([], writes)
    twice = fold_messages(fold_messages([], writes[:cut]), writes[cut:])
    one_by_one: list[Any] = []
    for w in writes:
        one_by_one = fold_messages(one_by_one, [w])
    assert _key(once) == _key(twice) == _key(one_by_one)


def test_fold_matches_add_messages_for_messages_with_ids() -> None:
    base = [HumanMessage("a", id="1"), AIMessage("b", id="2")]
    right = [AIMessage("b2", id="2"), HumanMessage("c", id="3"), RemoveMessage(id="1")]
    expected = add_messages([m.model_copy() for m in base], [m.model_copy() for m in right])
    assert _key(fold_messages(base, [right])) == _key(expected)


def test_fold_assigns_deterministic_ids_without_mutating_inputs() -> None:
    msg = HumanMessage("hello")
    first = fold_messages([], [msg])
    again = fold_messages([], [msg])
    assert msg.id is None
    assert first[0].id
    assert first[0].id == again[0].id
    # same content at another position gets another id
    both = fold_messages([], [[HumanMessage("hello"), HumanMessage("hello")]])
    assert both[0].id != both[1].id


def test_fold_accepts_tuples_and_dicts_and_rejects_unknown_removal() -> None:
    out = fold_messages([], [("user", "hi"), {"role": "assistant", "content": "yo"}])
    assert [m.type for m in out] == ["human", "ai"]
    with pytest.raises(ValueError, match="doesn't exist"):
        fold_messages(out, [RemoveMessage(id="nope")])


# ------------------------------------------------------------- graph + savers --


class _S(TypedDict, total=False):
    messages: Annotated[list[Any], messages_channel()]
    note: str


def _graph(saver: Any) -> Any:
    g = StateGraph(_S)
    g.add_node("a", lambda s: {"note": f"a{len(s['messages'])}"})
    g.add_node("model", lambda s: {"messages": [AIMessage(f"reply {len(s['messages'])}")]})
    g.add_node("b", lambda s: {"note": "b"})
    g.add_edge(START, "a")
    g.add_edge("a", "model")
    g.add_edge("model", "b")
    g.add_edge("b", END)
    return g.compile(checkpointer=saver)


_WORDS = [
    "".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2 + i % 8))
    for i in range(800)
]


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    n = 0
    while n < chars:
        w = rng.choice(_WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def _session(saver: Any) -> Any:
    app = _graph(saver)
    cfg = {"configurable": {"thread_id": "t"}}
    rng = random.Random(0)
    for i in range(12):
        app.invoke({"messages": [HumanMessage(f"turn {i} " + _text(rng, 300))]}, cfg)
        prune_after_run(saver, cfg)  # what create_kimi_agent does after each run
    # update_state between runs (a fork-free manual edit) must also be replayed
    app.update_state(cfg, {"messages": [HumanMessage("manual", id="manual")]})
    app.invoke({"messages": [HumanMessage("last")]}, cfg)
    prune_after_run(saver, cfg)
    return app


def test_pruned_saver_loads_every_kept_state_as_the_unpruned_one(tmp_path: Path) -> None:
    cfg = {"configurable": {"thread_id": "t"}}
    full = _session(open_sqlite_checkpointer(tmp_path / "full.sqlite", prune_turns=False))
    # ids of input messages are random per run: compare types and contents across runs
    by_step = {
        s.metadata["step"]: [(m.type, m.content) for m in s.values["messages"]]
        for s in full.get_state_history(cfg)
    }
    db = tmp_path / "pruned.sqlite"
    pruned = _session(open_sqlite_checkpointer(db))
    kept = [
        (s.config, s.metadata["step"], _key(s.values["messages"]))
        for s in pruned.get_state_history(cfg)
    ]
    # one checkpoint per finished turn (12 turns + the update) + the whole last turn
    assert len(kept) < len(by_step) / 2
    for _config, step, values in kept:
        assert [(typ, content) for typ, _id, content in values] == by_step[step]
    # a fresh process (nothing remembered) reads the same states
    fresh = _graph(open_sqlite_checkpointer(db))
    for config, _step, values in kept:
        assert _key(fresh.get_state(config).values["messages"]) == values
    final = fresh.get_state(cfg).values["messages"]
    assert len(final) == 2 * 13 + 1
    assert [m.content for m in final][-4:-1] == ["reply 23", "manual", "last"]


def test_delta_storage_grows_linearly_and_stays_near_raw_size(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    saver = open_sqlite_checkpointer(db)
    app = _graph(saver)
    cfg = {"configurable": {"thread_id": "t"}}
    rng = random.Random(1)
    raw = 0
    sizes = []
    for i in range(40):
        text = _text(rng, 16_000)  # ~4K tokens, the workload
        out = app.invoke({"messages": [HumanMessage(text)]}, cfg)
        raw += len(text) + len(out["messages"][-1].content)
        if i in (9, 19, 39):
            saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes.append(os.path.getsize(db))
    # bytes per turn between turns 20-40 about the same as between 10-20: linear
    per_turn_early = (sizes[1] - sizes[0]) / 10
    per_turn_late = (sizes[2] - sizes[1]) / 20
    assert per_turn_late < 1.5 * per_turn_early
    assert sizes[2] < 2 * raw


def test_plain_add_messages_storage_is_quadratic_for_contrast(tmp_path: Path) -> None:
    class Plain(TypedDict, total=False):
        messages: Annotated[list[Any], add_messages]
        note: str

    g = StateGraph(Plain)
    g.add_node("model", lambda s: {"messages": [AIMessage("ok")]})
    g.add_edge(START, "model")
    g.add_edge("model", END)
    conn = sqlite3.connect(tmp_path / "p.sqlite", check_same_thread=False)
    app = g.compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "t"}}
    sizes = []
    for i in range(30):
        app.invoke({"messages": [HumanMessage("x" * 2000 + str(i))]}, cfg)
        if i in (9, 19, 29):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes.append(os.path.getsize(tmp_path / "p.sqlite"))
    assert (sizes[2] - sizes[1]) > 1.5 * (sizes[1] - sizes[0])


def test_default_path_env_var_and_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deep" / "dir" / "kimi.sqlite"
    monkeypatch.setenv(DB_ENV_VAR, str(target))
    assert default_checkpoint_path() == target
    assert not target.exists()
    saver = open_sqlite_checkpointer()
    assert target.exists()
    assert isinstance(saver, KimiSqliteSaver)
    monkeypatch.delenv(DB_ENV_VAR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_checkpoint_path() == (
        tmp_path / "xdg" / "langchain-kimi-context" / "checkpoints.sqlite"
    )


def test_an_unusable_db_path_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Used to be sqlite3.OperationalError("unable to open database file") for a directory
    # and FileExistsError/NotADirectoryError for a path under a file, naming neither the
    # setting nor the way out.
    with pytest.raises(KimiConfigurationError, match=r"\(from db_path=\).*not a directory") as info:
        open_sqlite_checkpointer(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    monkeypatch.setenv(DB_ENV_VAR, str(a_file / "kimi.sqlite"))
    with pytest.raises(KimiConfigurationError, match=r"from \$KIMI_CONTEXT_DB.*checkpointer=False"):
        open_sqlite_checkpointer()


def test_kimi_saver_handles_forks_from_old_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "f.sqlite"
    saver = open_sqlite_checkpointer(db)
    app = _graph(saver)
    cfg = {"configurable": {"thread_id": "t"}}
    for i in range(5):
        app.invoke({"messages": [HumanMessage(f"m{i}", id=f"h{i}")]}, cfg)
    old = next(s for s in app.get_state_history(cfg) if len(s.values.get("messages", [])) == 4)
    fork_cfg = app.update_state(old.config, {"messages": [HumanMessage("fork", id="fk")]})
    app.invoke(None, fork_cfg)
    forked = _key(app.get_state(cfg).values["messages"])
    assert [k[1] for k in forked][:5] == ["h0", forked[1][1], "h1", forked[3][1], "fk"]
    stock = _graph(SqliteSaver(sqlite3.connect(db, check_same_thread=False), serde=saver.serde))
    assert _key(stock.get_state(cfg).values["messages"]) == forked
    # the original branch is still intact
    assert len(_key(app.get_state(old.config).values["messages"])) == 4


class _Snap(TypedDict, total=False):
    messages: Annotated[list[Any], messages_channel(snapshot_frequency=3)]
    note: str


def test_pruning_keeps_delta_snapshots_and_other_connections_read_the_same(
    tmp_path: Path,
) -> None:
    """Seeds written mid-turn move into the kept checkpoint; a second connection with
    its own memory of the thread (another process) reads every state identically."""
    g = StateGraph(_Snap)
    g.add_node("a", lambda s: {"note": f"a{len(s['messages'])}"})
    g.add_node("model", lambda s: {"messages": [AIMessage(f"reply {len(s['messages'])}")]})
    g.add_edge(START, "a")
    g.add_edge("a", "model")
    g.add_edge("model", END)
    db = tmp_path / "snap.sqlite"
    writer = open_sqlite_checkpointer(db)
    reader = open_sqlite_checkpointer(db)
    app, other = g.compile(checkpointer=writer), g.compile(checkpointer=reader)
    cfg = {"configurable": {"thread_id": "s"}}
    expected: list[str] = []
    for i in range(15):
        out = app.invoke({"messages": [HumanMessage(f"q{i}")]}, cfg)
        prune_after_run(writer, cfg)
        expected += [f"q{i}", f"reply {2 * i + 1}"]
        assert [m.content for m in out["messages"]] == expected
        # the reader remembered older states; the writer pruned under it meanwhile
        assert [m.content for m in other.get_state(cfg).values["messages"]] == expected
    seeds = writer.conn.execute("SELECT COUNT(*) FROM kimi_incoming").fetchone()[0]
    assert seeds >= 14
    states = list(other.get_state_history(cfg))
    lengths = [len(s.values.get("messages", [])) for s in states]
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[-1] <= 2


def test_copy_thread_and_keep_latest_keep_the_state(tmp_path: Path) -> None:
    saver = open_sqlite_checkpointer(tmp_path / "c.sqlite")
    app = _session(saver)
    src = {"configurable": {"thread_id": "t"}}
    before = _key(app.get_state(src).values["messages"])
    saver.copy_thread("t", "copy")
    copy = {"configurable": {"thread_id": "copy"}}
    assert (
        _key(
            _graph(open_sqlite_checkpointer(tmp_path / "c.sqlite"))
            .get_state(copy)
            .values["messages"]
        )
        == before
    )
    # the copy goes on by itself; the source is untouched
    app.invoke({"messages": [HumanMessage("only in the copy")]}, copy)
    assert _key(app.get_state(src).values["messages"]) == before
    saver.prune(["copy"], strategy="keep_latest")
    assert len(list(app.get_state_history(copy))) == 1
    fresh = _graph(open_sqlite_checkpointer(tmp_path / "c.sqlite"))
    values = [m.content for m in fresh.get_state(copy).values["messages"]]
    assert values[: len(before)] == [c for _t, _i, c in before]
    assert values[-2:] == ["only in the copy", f"reply {len(before) + 1}"]
