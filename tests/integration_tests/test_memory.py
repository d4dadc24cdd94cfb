"""RollingSnapshotMemory over the Kimi emulator (real HTTP): every method and error."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage

from langchain_kimi_context import (
    AppendTooLargeError,
    ContextPolicy,
    KimiChatModel,
    KimiConfigurationError,
    KimiQuotaExceededError,
    PreserveTooSmallError,
    RollingSnapshotMemory,
    SessionClosedError,
    SessionExistsError,
    SessionLimitError,
    SessionNotFoundError,
    SessionTurnError,
    SnapshotSessionMismatchError,
    UnknownSnapshotError,
    repair_tool_pairing,
)
from langchain_kimi_context.agent import AgentSettings
from langchain_kimi_context.context.compaction import forget_learned_windows
from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.memory.registry import registry_namespace, registry_thread_id
from langchain_kimi_context.testing import KimiEmulator
from tests.compaction_helpers import is_summary_request

warnings.filterwarnings("ignore", category=UserWarning)

SMALL = ContextPolicy(
    context_window=32_000,
    compact_trigger_tokens=10_000,
    compact_trigger_ratio=None,
    compact_reserve_tokens=None,
    compact_target_share=0.15,
)


@pytest.fixture(autouse=True)
def _forget_learned_windows() -> Iterator[None]:
    """Windows learned from emulated overflow errors are process-wide: drop them."""
    yield
    forget_learned_windows()


def read_file(path: str) -> str:
    """Read a source file of the project."""
    body = "".join(f"def helper_{i}(x):\n    return x + {i}\n" for i in range(120))
    return f"# {path}\n{body}"


def _chat_requests(emu: KimiEmulator) -> list[Any]:
    return [r for r in emu.requests if r.path.endswith("/chat/completions")]


def _model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(model="kimi-k2.6", api_key=emu.api_key, base_url=emu.base_url)


@pytest.fixture
def memory(emulator: KimiEmulator, tmp_path: Path) -> RollingSnapshotMemory:
    return RollingSnapshotMemory(
        _model(emulator),
        db_path=tmp_path / "m.sqlite",
        tools=[read_file],
        sleep=lambda s: None,
    )


def _turn(i: int, reply: int = 300) -> str:
    return f"Step {i}: refactor module_{i}.py. TODO: add tests for module_{i}.\n@reply {reply}"


# ------------------------------------------------------------------ sessions
def test_create_session_stores_system_and_lists(memory: RollingSnapshotMemory) -> None:
    sid = memory.create_session(system="You refactor Python code.", session_id="s1")
    assert sid == "s1"
    assert memory.sessions() == ["s1"]
    view = memory.messages(sid)
    assert [type(m) for m in view] == [SystemMessage]
    assert view[0].content == "You refactor Python code."
    with pytest.raises(SessionExistsError, match="already exists"):
        memory.create_session(session_id="s1")
    generated = memory.create_session()
    assert generated != sid
    assert generated in memory.sessions()


def test_session_cap_is_enforced_and_close_frees_a_slot(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    mem = RollingSnapshotMemory(_model(emulator), db_path=tmp_path / "m.db", max_sessions=2)
    a = mem.create_session()
    mem.create_session()
    with pytest.raises(SessionLimitError) as err:
        mem.create_session()
    assert err.value.limit == 2
    assert "close_session" in str(err.value)
    mem.close_session(a)
    mem.create_session()  # a slot was freed
    with pytest.raises(SessionClosedError):
        mem.append_message(a, "hello")
    # closed sessions keep their data; deleted ones do not
    assert [s.reason for s in mem.list_snapshots(a)] == ["created"]
    mem.close_session(a, delete=True)
    with pytest.raises(SessionNotFoundError):
        mem.list_snapshots(a)
    with pytest.raises(SessionNotFoundError, match="create_session"):
        mem.chat("nope", "hi")


def test_sessions_survive_a_restart_and_need_their_tools(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    db = tmp_path / "m.db"
    mem = RollingSnapshotMemory(_model(emulator), db_path=db, sleep=lambda s: None)
    sid = mem.create_session(system="sys", tools=[read_file])
    mem.chat(sid, '@call read_file {"path": "a.py"}')
    snap = mem.snapshot(sid, name="after-read")
    again = RollingSnapshotMemory(_model(emulator), db_path=db, sleep=lambda s: None)
    assert again.sessions() == [sid]
    assert [s.name for s in again.list_snapshots(sid)] == [None, "after-read"]
    with pytest.raises(KimiConfigurationError, match="attach_tools"):
        again.chat(sid, "next")
    again.attach_tools(sid, [read_file])
    assert again.chat(sid, "@say done").content == "done"
    again.rollback(sid, snap)
    assert [m.type for m in again.log(sid)][-1] == "ai"


# ------------------------------------------------------------------ appends
def test_append_message_limit_and_roles(memory: RollingSnapshotMemory) -> None:
    sid = memory.create_session(system="sys")
    before = memory.log(sid)
    mid = memory.append_message(sid, ("system", "Code style: black, 100 columns."))
    memory.append_message(sid, "Here is the spec of module a.")
    log = memory.log(sid)
    assert len(log) == len(before) + 2
    assert log[1].id == mid
    assert isinstance(log[1], SystemMessage)
    assert isinstance(log[2], HumanMessage)
    huge = "token " * 12_000
    with pytest.raises(AppendTooLargeError) as err:
        memory.append_message(sid, huge)
    assert err.value.limit == 8_000
    assert err.value.parts >= 2
    assert "Split it into" in str(err.value)
    assert len(memory.log(sid)) == len(log)  # nothing written
    with pytest.raises(AppendTooLargeError):
        memory.append_messages(sid, ["small", huge])
    assert len(memory.log(sid)) == len(log)  # all or nothing
    with pytest.raises(AppendTooLargeError):
        memory.chat(sid, huge)


def test_append_limit_comes_from_policy(emulator: KimiEmulator, tmp_path: Path) -> None:
    mem = RollingSnapshotMemory(
        _model(emulator),
        db_path=tmp_path / "m.db",
        policy=ContextPolicy(max_append_tokens=50),
    )
    sid = mem.create_session()
    mem.append_message(sid, "short")
    with pytest.raises(AppendTooLargeError) as err:
        mem.append_message(sid, "word " * 200)
    assert err.value.limit == 50


def test_append_stream_commits_one_message_from_a_real_stream(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    sid = memory.create_session(system="sys")
    model = _model(emulator)
    chunks = list(model.stream([HumanMessage("@say streamed answer text")]))
    assert len(chunks) > 1
    memory.append_stream(sid, chunks)
    log = memory.log(sid)
    assert isinstance(log[-1], AIMessage)
    assert not isinstance(log[-1], AIMessageChunk)
    assert log[-1].content == "streamed answer text"

    def broken() -> Iterator[str]:
        yield "partial "
        raise ConnectionError("stream cut")

    with pytest.raises(ConnectionError):
        memory.append_stream(sid, broken())
    assert len(memory.log(sid)) == len(log)  # nothing committed
    with pytest.raises(ValueError, match="empty stream"):
        memory.append_stream(sid, iter([]))

    async def agen() -> Any:
        for part in ("async ", "parts"):
            yield part

    asyncio.run(memory.aappend_stream(sid, agen(), role="assistant"))
    assert memory.log(sid)[-1].content == "async parts"
    assert memory.log(sid)[-1].type == "ai"


# ------------------------------------------------------------------ chat
def test_chat_runs_the_graph_records_usage_and_matches_the_ledger(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    sid = memory.create_session(system="You refactor code.")
    reply = memory.chat(sid, '@call read_file {"path": "a.py"}\n@say read it')
    assert reply.content == "read it"
    log = memory.log(sid)
    assert [m.type for m in log] == ["system", "human", "ai", "tool", "ai"]
    assert str(log[3].content).startswith("# a.py")
    reqs = _chat_requests(emulator)
    assert len(reqs) == 2
    assert reqs[0].body["messages"][0] == {"role": "system", "content": "You refactor code."}
    assert [t["function"]["name"] for t in reqs[0].body["tools"]] == ["read_file"]
    usage = memory.usage(sid)
    ledger = emulator.ledger()
    assert usage.calls == ledger.requests == 2
    assert usage.input_tokens == ledger.prompt_tokens
    assert usage.output_tokens == ledger.completion_tokens
    assert usage.cached_tokens == ledger.cached_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.cost == pytest.approx(ledger.cost(usage.currency), rel=1e-6)
    assert usage.context_by_role["tool"] > usage.context_by_role["user"] > 0
    assert usage.context_by_role["tools"] > 0
    assert usage.log_messages == 5
    assert usage.compactions == 0
    assert usage.snapshots == 1


def test_chat_past_the_threshold_snapshots_then_compacts(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    mem = RollingSnapshotMemory(
        _model(emulator), db_path=tmp_path / "m.db", policy=SMALL, sleep=lambda s: None
    )
    sid = mem.create_session(system="You refactor code. Decision: keep the API stable.")
    for i in range(14):
        mem.chat(sid, _turn(i, reply=900))
    snaps = mem.list_snapshots(sid)
    compaction_snaps = [s for s in snaps if s.reason == "compaction"]
    assert compaction_snaps, "the trigger never fired"
    usage = mem.usage(sid)
    assert usage.compactions >= 1
    assert usage.view_messages < usage.log_messages  # the log keeps everything
    assert len(mem.log(sid)) == 1 + 14 * 2
    view = mem.messages(sid)
    assert is_marked(view[1], "summary")
    assert "## Current Task" in str(view[1].content)
    # the summariser was called through the emulator's compaction responder
    summaries = [r for r in _chat_requests(emulator) if is_summary_request(r.body)]
    assert summaries
    # the snapshot holds the pre-compaction state: rolling back restores the full view
    mem.rollback(sid, compaction_snaps[0].snapshot_id)
    assert not any(is_marked(m, "summary") for m in mem.messages(sid))


def test_chat_with_truncate_mode_follows_the_seed_loop(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    mem = RollingSnapshotMemory(
        _model(emulator),
        db_path=tmp_path / "m.db",
        policy=SMALL,
        on_threshold="truncate",
        preserve_len=5_000,
        sleep=lambda s: None,
    )
    sid = mem.create_session(system="sys")
    for i in range(12):
        mem.chat(sid, _turn(i, reply=1000))
    reasons = [s.reason for s in mem.list_snapshots(sid)]
    assert "threshold" in reasons
    view = mem.messages(sid)
    assert view[0].content == "sys"
    assert "truncated" in str(view[1].content)
    records = mem._state(sid)["compactions"]
    assert records
    assert all(r["strategy"] == "truncate_head" for r in records)
    assert all(r["tokens_after"] <= 5_000 + 200 for r in records)  # system + notice + kept
    assert mem.usage(sid).context_tokens < 10_000 + 1_200  # never far past the trigger
    # no LLM summary in this mode: every request is a chat turn
    assert all(r.body["messages"][0]["content"] == "sys" for r in _chat_requests(emulator))


def test_transient_fault_is_retried_without_repeating_completed_calls(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    sid = memory.create_session(system="sys")
    emulator.faults.server_error(at={2})  # the call after the tool result fails once
    reply = memory.chat(sid, '@call read_file {"path": "a.py"}\n@say ok')
    assert reply.content == "ok"
    statuses = [r.status for r in _chat_requests(emulator)]
    assert statuses == [200, 500, 200]  # the completed first call was not repeated
    assert [m.type for m in memory.log(sid)] == ["system", "human", "ai", "tool", "ai"]


def test_failed_turn_rolls_back_to_the_state_before_it(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    sid = memory.create_session(system="sys")
    memory.chat(sid, "@say first")
    before = memory.log(sid)
    emulator.faults.quota_exceeded(at={1})
    with pytest.raises(SessionTurnError) as err:
        memory.chat(sid, "second")
    assert isinstance(err.value.cause, KimiQuotaExceededError)
    assert err.value.__cause__ is err.value.cause
    assert [m.id for m in memory.log(sid)] == [m.id for m in before]
    assert len(_chat_requests(emulator)) == 2  # one ok, one failed: nothing repeated
    snap = next(s for s in memory.list_snapshots(sid) if s.snapshot_id == err.value.snapshot_id)
    assert snap.reason == "before_turn"
    assert memory.chat(sid, "@say third").content == "third"
    assert [m.content for m in memory.log(sid) if m.type == "human"] == [
        "@say first",
        "@say third",
    ]


def test_repeated_failures_pause_and_roll_back(emulator: KimiEmulator, tmp_path: Path) -> None:
    mem = RollingSnapshotMemory(
        _model(emulator),
        db_path=tmp_path / "m.db",
        settings=AgentSettings(max_consecutive_failures=1),
        sleep=lambda s: None,
    )
    sid = mem.create_session(system="sys")
    emulator.faults.server_error(rate=1.0)
    with pytest.raises(SessionTurnError, match="paused after repeated"):
        mem.chat(sid, "hi")
    assert [m.type for m in mem.log(sid)] == ["system"]
    emulator.faults.clear()
    assert mem.chat(sid, "@say back").content == "back"


def test_achat(memory: RollingSnapshotMemory) -> None:
    sid = memory.create_session(system="sys")
    reply = asyncio.run(memory.achat(sid, "@say async hello"))
    assert reply.content == "async hello"
    assert memory.usage(sid).calls == 1


# ------------------------------------------------------------------ truncate
def _tool_heavy_session(memory: RollingSnapshotMemory, turns: int) -> str:
    sid = memory.create_session(system="You refactor code.")
    for i in range(turns):
        memory.chat(sid, f'@call read_file {{"path": "m{i}.py"}}\n@reply 200')
    return sid


def test_truncate_keeps_system_and_recent_turns_with_valid_pairing(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    sid = _tool_heavy_session(memory, 8)
    log_before = memory.log(sid)
    result = memory.truncate(sid, preserve_len=6_000)
    assert result.changed
    assert result.dropped_messages > 0
    view = memory.messages(sid)
    assert view[0].content == "You refactor code."
    assert is_marked(view[1], "summary")
    assert "truncated" in str(view[1].content)
    kept = view[2:]
    assert isinstance(kept[0], HumanMessage)  # cut at a turn start
    assert memory.token_counter.count_messages(kept) <= 6_000
    assert kept[-1].id == log_before[-1].id  # the most recent turn is kept
    _, report = repair_tool_pairing(view, ContextPolicy())
    assert not report.changed  # pairing stays valid
    assert [m.id for m in memory.log(sid)] == [m.id for m in log_before]  # record kept
    assert result.tokens_after < result.tokens_before
    # the next call sends the truncated view
    emulator.reset()
    memory.chat(sid, "@say ok")
    sent = _chat_requests(emulator)[0].body["messages"]
    assert len(sent) == len(view) + 1
    # and the pre-truncation state is a snapshot
    snap = next(s for s in memory.list_snapshots(sid) if s.snapshot_id == result.snapshot_id)
    assert snap.reason == "truncate"
    memory.rollback(sid, snap.snapshot_id)
    assert len(memory.messages(sid)) == len(log_before)


def test_truncate_inside_one_long_tool_loop_pins_the_user_message(
    memory: RollingSnapshotMemory,
) -> None:
    sid = memory.create_session(system="sys")
    memory.chat(sid, '@calls 8 read_file {"path": "f{i}.py"}\n@reply 50')
    result = memory.truncate(sid, preserve_len=4_096)
    assert result.changed
    view = memory.messages(sid)
    assert isinstance(view[2], HumanMessage)
    assert "@calls 8" in str(view[2].content)
    assert isinstance(view[3], AIMessage)
    assert view[3].tool_calls
    _, report = repair_tool_pairing(view, ContextPolicy())
    assert not report.changed


def test_truncate_refuses_small_preserve_len_and_noops_when_it_fits(
    memory: RollingSnapshotMemory,
) -> None:
    sid = memory.create_session(system="sys")
    memory.append_message(sid, "short")
    with pytest.raises(PreserveTooSmallError, match="4,096"):
        memory.truncate(sid, preserve_len=4_095)
    result = memory.truncate(sid, preserve_len=8_000)
    assert not result.changed
    assert result.snapshot_id is None
    assert [s.reason for s in memory.list_snapshots(sid)] == ["created"]
    with pytest.raises(PreserveTooSmallError):
        RollingSnapshotMemory("kimi-k2.6", api_key="sk-x", preserve_len=100)


# ------------------------------------------------------------------ snapshots
def test_snapshot_rollback_and_redo(memory: RollingSnapshotMemory) -> None:
    sid = memory.create_session(system="sys")
    memory.chat(sid, "@say one")
    s1 = memory.snapshot(sid, name="after-one")
    memory.chat(sid, "@say two")
    s2 = memory.snapshot(sid)
    infos = memory.list_snapshots(sid)
    assert [(s.name, s.reason) for s in infos] == [
        (None, "created"),
        ("after-one", "manual"),
        (None, "manual"),
    ]
    assert infos[1].snapshot_id == s1
    assert infos[1].session_id == sid
    memory.rollback(sid, s1)
    assert [m.content for m in memory.log(sid)] == ["sys", "@say one", "one"]
    memory.rollback(sid, s2)  # later snapshots stay valid: a rollback can be undone
    assert memory.log(sid)[-1].content == "two"
    memory.rollback(sid, s1)
    assert memory.chat(sid, "@say three").content == "three"
    assert [m.content for m in memory.log(sid)][-2:] == ["@say three", "three"]


def test_snapshot_errors(memory: RollingSnapshotMemory) -> None:
    a = memory.create_session()
    b = memory.create_session()
    snap_b = memory.snapshot(b)
    with pytest.raises(UnknownSnapshotError, match="list_snapshots"):
        memory.rollback(a, "snap-does-not-exist")
    with pytest.raises(SnapshotSessionMismatchError) as err:
        memory.rollback(a, snap_b)
    assert err.value.actual == b
    assert err.value.expected == a
    with pytest.raises(UnknownSnapshotError):
        memory.share("snap-nope")
    with pytest.raises(SessionNotFoundError):
        memory.snapshot("missing")


def test_share_forks_without_touching_the_original(memory: RollingSnapshotMemory) -> None:
    sid = memory.create_session(system="sys")
    memory.chat(sid, "@say base")
    snap = memory.snapshot(sid)
    memory.chat(sid, "@say original continues")
    fork = memory.share(snap)
    assert fork != sid
    assert fork in memory.sessions()
    assert [m.content for m in memory.log(fork)] == ["sys", "@say base", "base"]
    memory.chat(fork, "@say fork continues")
    assert memory.log(fork)[-1].content == "fork continues"
    assert [m.content for m in memory.log(sid)][-1] == "original continues"
    assert len(memory.log(sid)) == 5
    assert memory.usage(fork).calls == 2  # usage carried over + its own call
    # the fork's snapshots are its own
    assert [s.reason for s in memory.list_snapshots(fork)] == ["created"]


def test_share_checks_the_new_id_like_create_session(memory: RollingSnapshotMemory) -> None:
    sid = memory.create_session(system="sys")
    snap = memory.snapshot(sid)
    with pytest.raises(SessionExistsError):
        memory.share(snap, session_id=sid)
    with pytest.raises(KimiConfigurationError, match="may not start with"):
        memory.share(snap, session_id=registry_thread_id("x"))


def test_the_registry_is_public_and_shared_by_memories_of_a_namespace(
    memory: RollingSnapshotMemory,
) -> None:
    sid = memory.create_session(system="sys")
    other = RollingSnapshotMemory(
        memory.model, checkpointer=memory.checkpointer, tools=[read_file], sleep=lambda s: None
    )
    head = memory.list_snapshots(sid)[0].checkpoint_id
    snap = other.registry.register_snapshot(sid, head, name="from-other", reason="manual")
    assert memory.registry.load().snapshots[snap].name == "from-other"
    assert registry_namespace(memory.registry.thread_id) == "default"
    assert [e.session_id for e in other.registry.load().sessions.values()] == [sid]


# ------------------------------------------------------------------ compress
def test_compress_outline_summary(memory: RollingSnapshotMemory, emulator: KimiEmulator) -> None:
    sid = memory.create_session(system="You refactor code.")
    for i in range(6):
        memory.chat(sid, _turn(i, reply=400) + "\nDecision: use dataclasses.")
    emulator.reset()
    result = memory.compress(sid, ratio=4)
    assert result.changed
    assert result.record_id
    assert result.tokens_after < result.tokens_before
    view = memory.messages(sid)
    assert view[0].content == "You refactor code."
    assert is_marked(view[1], "summary")
    text = str(view[1].content)
    for heading in ("## Current Task", "## Design Decisions", "## TODO"):
        assert heading in text
    assert "dataclasses" in text
    reqs = _chat_requests(emulator)
    assert len(reqs) == 1
    assert is_summary_request(reqs[0].body)
    assert len(memory.log(sid)) == 13  # nothing deleted
    assert any(s.reason == "compress" for s in memory.list_snapshots(sid))
    assert memory.usage(sid).compactions == 1
    with pytest.raises(KimiConfigurationError, match="outline"):
        memory.compress(sid, format="bullets")  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match="ratio"):
        memory.compress(sid, ratio=0.5)


# ------------------------------------------------------------------ multi-session
def test_run_subtask_brings_back_only_the_result(memory: RollingSnapshotMemory) -> None:
    parent = memory.create_session(system="main task")
    memory.chat(parent, "@say planning")
    result = memory.run_subtask(
        '@calls 3 read_file {"path": "f{i}.py"}\n@say three files read',
        system="You read files.",
        into=parent,
    )
    assert result.result == "three files read"
    assert result.usage is not None
    assert result.usage.calls == 4
    assert result.session_id not in memory.sessions()  # closed: its slot is free
    parent_log = memory.log(parent)
    assert not any(m.type == "tool" for m in parent_log)
    assert "three files read" in str(parent_log[-1].content)
    assert len(memory.log(result.session_id)) == 9  # the exploration stays in its session


def test_sessions_are_threads_of_the_kimi_agent_graph(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    from langchain_kimi_context import create_kimi_agent

    sid = memory.create_session(system="sys")
    memory.chat(sid, "@say from memory")
    agent = create_kimi_agent(_model(emulator), [read_file], checkpointer=memory.checkpointer)
    cfg: Any = {"configurable": {"thread_id": sid}}
    out = agent.invoke({"messages": [HumanMessage("@say from the graph")]}, cfg)
    assert out["messages"][-1].content == "from the graph"
    assert [m.content for m in memory.log(sid)][-2:] == ["@say from the graph", "from the graph"]
    assert memory.usage(sid).calls == 2  # one usage record for both faces


def test_achat_on_a_sync_only_checkpointer_and_its_failure_path(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    saver = SqliteSaver(sqlite3.connect(str(tmp_path / "plain.db"), check_same_thread=False))
    saver.setup()
    mem = RollingSnapshotMemory(_model(emulator), checkpointer=saver, sleep=lambda s: None)
    sid = mem.create_session(system="sys")
    assert asyncio.run(mem.achat(sid, "@say threaded")).content == "threaded"
    emulator.faults.quota_exceeded(at={1})
    with pytest.raises(SessionTurnError):
        asyncio.run(mem.achat(sid, "fails"))
    assert [m.type for m in mem.log(sid)] == ["system", "human", "ai"]


def test_achat_failure_rolls_back_on_the_async_default_checkpointer(
    memory: RollingSnapshotMemory, emulator: KimiEmulator
) -> None:
    sid = memory.create_session(system="sys")
    emulator.faults.quota_exceeded(at={1})
    with pytest.raises(SessionTurnError):
        asyncio.run(memory.achat(sid, "fails"))
    assert [m.type for m in memory.log(sid)] == ["system"]


def test_wrong_model_policy_or_settings_types_are_clear_errors(tmp_path: Path) -> None:
    model = KimiChatModel(model="kimi-k2.6", api_key="sk-unit")
    # all three used to be accepted and fail later (AttributeError on a dict, or at the
    # first chat for a non-model)
    with pytest.raises(KimiConfigurationError, match=r"RollingSnapshotMemory\(model\) .* got int"):
        RollingSnapshotMemory(42, db_path=tmp_path / "m.sqlite")  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match=r"policy=\.\.\.\) must be a ContextPolicy"):
        RollingSnapshotMemory(
            model, policy={"context_window": 64_000}, db_path=tmp_path / "m.sqlite"
        )  # type: ignore[arg-type]
    with pytest.raises(KimiConfigurationError, match=r"settings=\.\.\.\) must be an AgentSettings"):
        RollingSnapshotMemory(
            model, settings={"max_steps_per_turn": 3}, db_path=tmp_path / "m.sqlite"
        )  # type: ignore[arg-type]


def test_a_model_name_is_enough(
    emulator: KimiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOONSHOT_API_KEY", emulator.api_key)
    monkeypatch.setenv("MOONSHOT_BASE_URL", emulator.base_url)
    memory = RollingSnapshotMemory("kimi-k2.6", db_path=tmp_path / "m.sqlite")
    sid = memory.create_session(system="You refactor the shop package.")
    assert memory.chat(sid, "@say split done").content == "split done"
    assert memory.model.model_name == "kimi-k2.6"
    assert _chat_requests(emulator)[-1].body["model"] == "kimi-k2.6"


def test_truncate_mode_never_summarises_at_the_price_budget(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    # kimi-k2.6 is priced, so the default policy's price budget fires near 51K tokens;
    # in truncate mode the memory owns the trigger and a summary call must never happen
    mem = RollingSnapshotMemory(
        _model(emulator),
        db_path=tmp_path / "m.db",
        on_threshold="truncate",
        sleep=lambda s: None,
    )
    sid = mem.create_session(system="sys")
    for i in range(14):
        mem.chat(sid, _turn(i, reply=5_000))
    assert mem.usage(sid).context_tokens > 60_000  # past the price budget
    assert not [r for r in _chat_requests(emulator) if is_summary_request(r.body)]
    records = mem._state(sid).get("compactions") or []
    assert all(r["strategy"] == "truncate_head" for r in records)
