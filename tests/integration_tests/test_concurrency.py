"""Many callers on one session: every turn is kept exactly once, in order, or refused.

N callers x M turns on ONE thread id, with real threads, real subprocesses and
concurrent ``ainvoke``, for the agent and the memory API, on SQLite and on Postgres.
A turn is either kept (its user message once, its reply right after it, each caller's
turns in the order it sent them) or refused with ``ThreadBusyError``; never lost.
Different thread ids run in parallel (measured and printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_kimi_context import KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.agent.storage import open_sqlite_checkpointer
from langchain_kimi_context.errors import KimiConfigurationError, ThreadBusyError
from langchain_kimi_context.testing import KimiEmulator

ROOT = Path(__file__).resolve().parents[2]
FAST = RetrySettings(initial_interval=0.001, max_interval=0.01)
N_CALLERS, M_TURNS = 4, 5


def _text(tag: str, delay: float = 0.02) -> str:
    return f"@fail slow {delay}\n@say r {tag}"


# ----------------------------------------------------------------------------- stores
@pytest.fixture(scope="module")
def pg_dsn(postgres_dsn: str) -> str:
    """The run's database with LangGraph's tables (created once, before any concurrency)."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(postgres_dsn, autocommit=True, prepare_threshold=0) as conn:
        PostgresSaver(conn).setup()
    return postgres_dsn


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``sqlite:PATH`` or a Postgres DSN (both faces, every test)."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'shared.sqlite'}"
    return str(request.getfixturevalue("pg_dsn"))


_open: list[Any] = []


def _saver(store: str) -> Any:
    if store.startswith("sqlite:"):
        return open_sqlite_checkpointer(store.removeprefix("sqlite:"))
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    conn = psycopg.connect(store, autocommit=True, prepare_threshold=0)
    _open.append(conn)
    return PostgresSaver(conn)


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def _model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)


def _settings(strategy: str = "enqueue", timeout: float = 60) -> AgentSettings:
    return AgentSettings(retry=FAST, multitask_strategy=strategy, busy_timeout_s=timeout)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- checks
def assert_turns(log: list[BaseMessage], sent: dict[str, list[str]], kept: set[str]) -> None:
    """Every kept turn once, in each caller's order, its reply right after it."""
    turns = [m for m in log if isinstance(m, HumanMessage)]
    tags = [str(m.content).split("@say r ")[-1] for m in turns]
    assert sorted(tags) == sorted(kept), f"kept {len(kept)} turns, log has {len(tags)}: {tags}"
    assert len(set(tags)) == len(tags), "a turn was stored twice"
    for caller_tags in sent.values():
        mine = [t for t in tags if t in caller_tags]
        assert mine == [t for t in caller_tags if t in kept], "a caller's turns were reordered"
    body = [m for m in log if m.type != "system"]
    for i in range(0, len(body), 2):  # human, its own reply, human, ...
        assert isinstance(body[i], HumanMessage)
        assert isinstance(body[i + 1], AIMessage)
        assert body[i + 1].content == "r " + str(body[i].content).split("@say r ")[-1]


def _run_threads(n: int, fn: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            fn(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


# ----------------------------------------------------------------------------- agent
@pytest.mark.parametrize("strategy", ["enqueue", "reject"])
def test_agent_threads_on_one_thread_id(emulator: KimiEmulator, store: str, strategy: str) -> None:
    agent = create_kimi_agent(
        _model(emulator), checkpointer=_saver(store), settings=_settings(strategy)
    )
    cfg = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}
    sent: dict[str, list[str]] = {}
    kept: set[str] = set()
    refused: list[str] = []

    def caller(i: int) -> None:
        sent[str(i)] = [f"{i}-{j}" for j in range(M_TURNS)]
        for tag in sent[str(i)]:
            try:
                agent.invoke({"messages": [HumanMessage(_text(tag))]}, cfg)
                kept.add(tag)
            except ThreadBusyError:
                refused.append(tag)

    _run_threads(N_CALLERS, caller)
    assert_turns(agent.get_state(cfg).values["messages"], sent, kept)
    if strategy == "enqueue":
        assert len(kept) == N_CALLERS * M_TURNS
    else:
        assert len(kept) + len(refused) == N_CALLERS * M_TURNS
        assert refused, "with 4 callers at once some turns must find the thread busy"


def test_agent_concurrent_ainvoke_on_one_thread_id(emulator: KimiEmulator, store: str) -> None:
    cfg = {"configurable": {"thread_id": f"a-{uuid.uuid4().hex[:8]}"}}
    sent = {str(i): [f"{i}-{j}" for j in range(3)] for i in range(N_CALLERS)}

    async def caller(agent: Any, tags: list[str]) -> None:
        for tag in tags:
            await agent.ainvoke({"messages": [HumanMessage(_text(tag))]}, cfg)

    async def main() -> list[BaseMessage]:
        async with contextlib.AsyncExitStack() as stack:
            if store.startswith("sqlite:"):
                saver = _saver(store)
            else:  # LangGraph's async Postgres saver, on this loop
                import psycopg
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

                conn = await psycopg.AsyncConnection.connect(
                    store, autocommit=True, prepare_threshold=0
                )
                stack.push_async_callback(conn.close)
                saver = AsyncPostgresSaver(conn)
            agent = create_kimi_agent(_model(emulator), checkpointer=saver, settings=_settings())
            await asyncio.gather(*(caller(agent, tags) for tags in sent.values()))
            return list((await agent.aget_state(cfg)).values["messages"])

    log = asyncio.run(main())
    assert_turns(log, sent, {t for tags in sent.values() for t in tags})


def _subprocess_callers(
    emu: KimiEmulator, store: str, thread: str, session: str, n: int, m: int
) -> dict[str, tuple[dict[str, list[str]], set[str], list[str]]]:
    """Run ``n`` processes of ``m`` turns each on the agent thread and the memory session."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = [sys.executable, "-m", "tests.integration_tests._concurrency_worker"]
    args = [*worker, store, emu.base_url, emu.api_key, thread, session]
    procs = [
        subprocess.Popen(
            [*args, f"p{i}", str(m), "enqueue"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    sent = {f"p{i}": [f"p{i}-{j}" for j in range(m)] for i in range(n)}
    out: dict[str, tuple[dict[str, list[str]], set[str], list[str]]] = {
        face: (sent, set(), []) for face in ("agent", "memory")
    }
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        for line in stdout.splitlines():
            row = json.loads(line)
            _, kept, refused = out[row["face"]]
            if row["ok"]:
                kept.add(row["tag"])
            else:
                assert "is busy" in row["error"], row
                refused.append(row["tag"])
    return out


@pytest.mark.subprocess
def test_subprocesses_on_one_thread_and_one_session(emulator: KimiEmulator, store: str) -> None:
    """2 processes x 3 turns on one agent thread AND one memory session of one store."""
    thread = f"p-{uuid.uuid4().hex[:8]}"
    memory = _memory(emulator, store)
    sid = memory.create_session(system="Be terse.")
    results = _subprocess_callers(emulator, store, thread, sid, 2, 3)
    for face, (_sent, kept, refused) in results.items():
        assert not refused, face
        assert len(kept) == 6, face
    agent = create_kimi_agent(_model(emulator), checkpointer=_saver(store))
    state = agent.get_state({"configurable": {"thread_id": thread}})
    assert_turns(state.values["messages"], *results["agent"][:2])
    assert_turns(memory.log(sid), *results["memory"][:2])


# ----------------------------------------------------------------------------- memory
def _memory(emu: KimiEmulator, store: str, strategy: str = "enqueue") -> RollingSnapshotMemory:
    return RollingSnapshotMemory(
        _model(emu), checkpointer=_saver(store), settings=_settings(strategy)
    )


@pytest.mark.parametrize("strategy", ["enqueue", "reject"])
def test_memory_chat_from_threads_on_one_session(
    emulator: KimiEmulator, store: str, strategy: str
) -> None:
    memory = _memory(emulator, store, strategy)
    sid = memory.create_session(system="Be terse.")
    sent: dict[str, list[str]] = {}
    kept: set[str] = set()
    refused: list[str] = []

    def caller(i: int) -> None:
        sent[str(i)] = [f"{i}-{j}" for j in range(M_TURNS)]
        for tag in sent[str(i)]:
            try:
                memory.chat(sid, _text(tag))
                kept.add(tag)
            except ThreadBusyError:
                refused.append(tag)

    _run_threads(N_CALLERS, caller)
    assert_turns(memory.log(sid), sent, kept)
    assert len(kept) + len(refused) == N_CALLERS * M_TURNS
    assert bool(refused) == (strategy == "reject")


def test_memory_concurrent_achat(emulator: KimiEmulator, store: str) -> None:
    memory = _memory(emulator, store)
    sid = memory.create_session()
    sent = {str(i): [f"{i}-{j}" for j in range(3)] for i in range(N_CALLERS)}

    async def caller(tags: list[str]) -> None:
        for tag in tags:
            await memory.achat(sid, _text(tag))

    async def main() -> None:
        await asyncio.gather(*(caller(tags) for tags in sent.values()))

    asyncio.run(main())
    assert_turns(memory.log(sid), sent, {t for tags in sent.values() for t in tags})


# ----------------------------------------------------------------------------- parallel
def test_different_threads_run_in_parallel(emulator: KimiEmulator, tmp_path: Path) -> None:
    """8 turns on 8 thread ids vs one turn, and vs 8 turns queued on one thread id."""
    agent = create_kimi_agent(_model(emulator), db_path=tmp_path / "p.sqlite", settings=_settings())
    delay = 0.4

    def turn(thread: str, tag: str) -> None:
        cfg = {"configurable": {"thread_id": thread}}
        agent.invoke({"messages": [HumanMessage(_text(tag, delay))]}, cfg)

    start = time.perf_counter()
    turn("solo", "solo")
    one = time.perf_counter() - start
    start = time.perf_counter()
    _run_threads(8, lambda i: turn(f"par-{i}", f"par-{i}"))
    parallel = time.perf_counter() - start
    start = time.perf_counter()
    _run_threads(8, lambda i: turn("queue", f"q-{i}"))
    queued = time.perf_counter() - start
    print(
        f"\n[concurrency] 1 turn: {one:.2f} s; 8 turns on 8 thread ids: {parallel:.2f} s "
        f"({parallel / one:.2f}x); 8 turns on one thread id (queued): {queued:.2f} s"
    )
    assert queued >= 8 * delay  # one session: one turn at a time
    assert parallel < queued / 2  # different sessions never wait for each other


def test_unsupported_strategies_are_build_time_errors() -> None:
    with pytest.raises(KimiConfigurationError, match="multitask_strategy"):
        AgentSettings(multitask_strategy="rollback")  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match="busy_timeout_s"):
        AgentSettings(busy_timeout_s=0)


def test_memory_sessions_in_parallel_are_never_refused(emulator: KimiEmulator, store: str) -> None:
    """'reject' refuses a second turn on ONE session, never turns on different sessions
    (their shared registry writes queue)."""
    memory = _memory(emulator, store, "reject")
    sids = [memory.create_session() for _ in range(N_CALLERS)]

    def caller(i: int) -> None:
        for j in range(3):
            memory.chat(sids[i], _text(f"{i}-{j}"))

    _run_threads(N_CALLERS, caller)
    for i, sid in enumerate(sids):
        sent = {str(i): [f"{i}-{j}" for j in range(3)]}
        assert_turns(memory.log(sid), sent, set(sent[str(i)]))


def test_plain_langgraph_on_the_same_load_for_comparison(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    """The same 4 threads x 5 turns on LangChain's create_agent + SqliteSaver (printed)."""
    import sqlite3

    from langchain.agents import create_agent
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(tmp_path / "plain.sqlite"), check_same_thread=False)
    plain = create_agent(_model(emulator), checkpointer=SqliteSaver(conn))
    ours = create_kimi_agent(
        _model(emulator), db_path=tmp_path / "ours.sqlite", settings=_settings()
    )
    kept = {}
    for name, agent in (("plain create_agent", plain), ("create_kimi_agent", ours)):
        cfg = {"configurable": {"thread_id": "same"}}

        def caller(i: int, agent: Any = agent, cfg: Any = cfg) -> None:
            for j in range(M_TURNS):
                agent.invoke({"messages": [HumanMessage(_text(f"{i}-{j}"))]}, cfg)

        _run_threads(N_CALLERS, caller)
        log = agent.get_state(cfg).values["messages"]
        kept[name] = sum(isinstance(m, HumanMessage) for m in log)
    conn.close()
    print(
        f"\n[concurrency] {N_CALLERS} threads x {M_TURNS} invoke on one thread_id, turns kept: "
        + ", ".join(f"{name} {n}/{N_CALLERS * M_TURNS}" for name, n in kept.items())
    )
    assert kept["create_kimi_agent"] == N_CALLERS * M_TURNS


_HOLDER = """
import sys, time
from langchain_kimi_context.agent.concurrency import store_lock_for
from tests.integration_tests._concurrency_worker import open_store
lock = store_lock_for(open_store(sys.argv[1]))
assert lock.try_acquire("crash-thread") is not None
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.subprocess
def test_a_crashed_holder_never_leaves_the_thread_locked(store: str) -> None:
    from langchain_kimi_context.agent.concurrency import store_lock_for

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, store], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        lock = store_lock_for(_saver(store))
        assert lock.try_acquire("crash-thread") is None  # another process holds it
        handle = lock.try_acquire("other-thread")  # other threads are free
        assert handle is not None
        lock.release(handle)
    finally:
        holder.kill()
        holder.wait(10)
    deadline = time.monotonic() + 10
    while (handle := lock.try_acquire("crash-thread")) is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices a dead Postgres session within moments
    assert handle is not None
    lock.release(handle)


# ----------------------------------------------------------------------------- interrupt
_LONG_TURN = "@calls 8 slow_step {}\n@say done A"


def _slow_agent(emu: KimiEmulator, saver: Any, started: threading.Event | None = None) -> Any:
    def slow_step() -> str:
        """A slow step of a long task."""
        if started is not None:
            started.set()
        time.sleep(0.25)
        return "step done"

    return create_kimi_agent(_model(emu), [slow_step], checkpointer=saver, settings=_settings())


def _assert_interrupted_then_new_turn(log: list[BaseMessage]) -> None:
    users = [m.content for m in log if isinstance(m, HumanMessage)]
    assert users == [_LONG_TURN, "@say B here"]  # both turns kept, once each, in order
    assert log[-1].content == "B here"
    steps = [m for m in log if isinstance(m, AIMessage) and m.tool_calls]
    assert 1 <= len(steps) < 8  # the long turn stopped early, its finished steps saved


def test_interrupt_stops_the_running_turn_in_this_process(
    emulator: KimiEmulator, store: str
) -> None:
    from langchain_kimi_context.errors import ThreadInterruptedError

    started = threading.Event()
    agent = _slow_agent(emulator, _saver(store), started)
    thread = f"i-{uuid.uuid4().hex[:8]}"
    cfg = {"configurable": {"thread_id": thread}}
    outcome: list[BaseException | None] = []

    def long_turn() -> None:
        try:
            agent.invoke({"messages": [HumanMessage(_LONG_TURN)]}, cfg)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=long_turn)
    runner.start()
    assert started.wait(10)
    begun = time.perf_counter()
    new_cfg = {"configurable": {"thread_id": thread, "multitask_strategy": "interrupt"}}
    out = agent.invoke({"messages": [HumanMessage("@say B here")]}, new_cfg)
    waited = time.perf_counter() - begun
    runner.join(30)
    assert isinstance(outcome[0], ThreadInterruptedError)
    assert out["messages"][-1].content == "B here"
    _assert_interrupted_then_new_turn(agent.get_state(cfg).values["messages"])
    print(f"\n[concurrency] interrupt: the new turn finished {waited:.2f} s after it was sent")


_LONG_RUNNER = """
import sys, time
from langchain_core.messages import HumanMessage
from langchain_kimi_context import KimiChatModel, create_kimi_agent
from langchain_kimi_context.errors import ThreadInterruptedError
from tests.integration_tests._concurrency_worker import open_store
store, base_url, api_key, thread, text = sys.argv[1:]

def slow_step() -> str:
    '''A slow step of a long task.'''
    print("started", flush=True)
    time.sleep(0.25)
    return "step done"

model = KimiChatModel(model="kimi-k2.6", base_url=base_url, api_key=api_key)
agent = create_kimi_agent(model, [slow_step], checkpointer=open_store(store))
try:
    agent.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread}})
    print("finished", flush=True)
except ThreadInterruptedError:
    print("interrupted", flush=True)
"""


@pytest.mark.subprocess
def test_interrupt_stops_a_turn_running_in_another_process(
    emulator: KimiEmulator, store: str
) -> None:
    thread = f"x-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [store, emulator.base_url, emulator.api_key, thread, _LONG_TURN]
    other = subprocess.Popen(
        [sys.executable, "-c", _LONG_RUNNER, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "started"
        agent = _slow_agent(emulator, _saver(store))
        cfg = {"configurable": {"thread_id": thread, "multitask_strategy": "interrupt"}}
        out = agent.invoke({"messages": [HumanMessage("@say B here")]}, cfg)
        rest, err = other.communicate(timeout=60)
    finally:
        other.kill()
    assert "interrupted" in rest.split(), err[-2000:]
    assert out["messages"][-1].content == "B here"
    _assert_interrupted_then_new_turn(agent.get_state(cfg).values["messages"])


def test_memory_interrupt_rolls_the_running_turn_back(emulator: KimiEmulator, store: str) -> None:
    """Memory API: the interrupted turn is rolled back (SessionTurnError), the new one runs."""
    from langchain_kimi_context import SessionTurnError
    from langchain_kimi_context.errors import ThreadInterruptedError

    started = threading.Event()

    def slow_step() -> str:
        """A slow step of a long task."""
        started.set()
        time.sleep(0.25)
        return "step done"

    memory = RollingSnapshotMemory(
        _model(emulator), checkpointer=_saver(store), tools=[slow_step], settings=_settings()
    )
    sid = memory.create_session(system="sys")
    outcome: list[BaseException | None] = []

    def long_turn() -> None:
        try:
            memory.chat(sid, _LONG_TURN)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=long_turn)
    runner.start()
    assert started.wait(10)
    interrupting = RollingSnapshotMemory(
        _model(emulator),
        checkpointer=memory.checkpointer,
        tools=[slow_step],
        settings=_settings("interrupt"),
    )
    reply = interrupting.chat(sid, "@say B here")
    runner.join(30)
    assert isinstance(outcome[0], SessionTurnError)
    assert isinstance(outcome[0].cause, ThreadInterruptedError)
    assert reply.content == "B here"
    assert [m.type for m in memory.log(sid)] == ["system", "human", "ai"]  # rolled back


def test_a_postgres_url_checkpointer_serialises_across_processes_too(
    emulator: KimiEmulator, pg_dsn: str
) -> None:
    import psycopg

    from langchain_kimi_context.agent.concurrency import PostgresAdvisoryLock

    params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    url = (
        f"postgresql://{params.get('user', 'postgres')}@{params['host']}:{params.get('port', 5432)}"
    )
    agent = create_kimi_agent(
        _model(emulator), checkpointer=f"{url}/{params['dbname']}", settings=_settings()
    )
    assert isinstance(agent.kimi_guard.store, PostgresAdvisoryLock)
    cfg = {"configurable": {"thread_id": f"u-{uuid.uuid4().hex[:8]}"}}
    sent = {str(i): [f"{i}-{j}" for j in range(3)] for i in range(3)}
    _run_threads(
        3, lambda i: [agent.invoke({"messages": [("user", _text(t))]}, cfg) for t in sent[str(i)]]
    )
    kept = {t for tags in sent.values() for t in tags}
    assert_turns(agent.get_state(cfg).values["messages"], sent, kept)
