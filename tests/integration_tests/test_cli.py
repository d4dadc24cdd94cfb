"""``kimi-context``: every command and every error case, on a database written by real runs.

The database is made once per module by a ``create_kimi_agent`` thread (a tool call) and
a ``RollingSnapshotMemory`` session (snapshots, a compaction) talking HTTP to the
emulator. Commands run in-process through ``main`` (fast); the console entry points run
as real subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, messages_from_dict
from langgraph.checkpoint.base import BaseCheckpointSaver

from langchain_kimi_context import (
    KimiChatModel,
    RollingSnapshotMemory,
    create_kimi_agent,
)
from langchain_kimi_context.agent.storage import open_sqlite_checkpointer
from langchain_kimi_context.cli import main
from langchain_kimi_context.testing import KimiEmulator

SECRET = "sk-cli-test-secret-0123456789"


def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"


def _fill(db: Path | None, emulator: KimiEmulator, checkpointer: Any = None) -> dict[str, Any]:
    model = KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key)
    where: dict[str, Any] = {"checkpointer": checkpointer} if checkpointer else {"db_path": db}
    agent = create_kimi_agent(model, [read_file], **where)
    cfg = {"configurable": {"thread_id": "agent-1"}}
    agent.invoke({"messages": [HumanMessage('@call read_file {"path": "a.py"}')]}, cfg)
    agent.invoke({"messages": [HumanMessage("@say second answer")]}, cfg)
    memory = RollingSnapshotMemory(model, tools=[read_file], **where)
    sid = memory.create_session(system="Be terse.", session_id="sess-1")
    memory.chat(sid, "@reply 300")
    snap = memory.snapshot(sid, name="after-first")
    memory.chat(sid, "@reply 300")
    memory.chat(sid, "@say third")
    memory.compress(sid)
    return {"memory": memory, "snap": snap, "agent": agent}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("cli")
    db = root / "base.sqlite"
    with KimiEmulator() as emulator:
        info = _fill(db, emulator)
    info["db"] = db
    return info


@pytest.fixture
def db(made: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the module's database (commands may write to it)."""
    made["memory"].checkpointer.conn.commit()
    target = tmp_path / "copy.sqlite"
    src = sqlite3.connect(made["db"])
    dst = sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()
    return target


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kimi-context: error: ")
    return lines[0]


# ----------------------------------------------------------------------------- commands
def test_threads_list_table_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "threads", "list", "--db", str(db))
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[:4] == ["thread", "kind", "turns", "messages"]
    assert sorted(r.split()[0] for r in rows) == ["agent-1", "sess-1"]  # registry hidden
    data = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", str(db))}
    assert data["agent-1"]["kind"] == "thread"
    assert (data["agent-1"]["turns"], data["agent-1"]["messages"]) == (2, 6)
    assert data["sess-1"]["kind"] == "session"
    assert data["sess-1"]["turns"] == 3
    assert data["agent-1"]["calls"] == 3
    assert data["agent-1"]["cost"] > 0
    assert data["agent-1"]["currency"] == "USD"
    assert data["agent-1"]["updated"].endswith("Z")


def test_threads_list_reads_kimi_context_db_env(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIMI_CONTEXT_DB", str(db))
    rows = run_json(capsys, "threads", "list")
    assert {r["thread_id"] for r in rows} == {"agent-1", "sess-1"}


def test_threads_show_transcript_usage_compactions_snapshots(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "threads", "show", "sess-1", "--db", str(db))
    assert code == 0
    assert "thread sess-1 (session), model kimi-k2.6" in out
    assert "usage: 3 calls" in out
    assert "compactions: 1" in out
    assert "after-first" in out
    assert made["snap"] in out
    assert "[0] system: Be terse." in out
    assert "---- compaction #1 summarised everything above ----" in out
    data = run_json(capsys, "threads", "show", "sess-1", "--db", str(db))
    assert data["model"] == "kimi-k2.6"
    assert data["usage"]["calls"] == 3
    assert data["compactions"][0]["tokens_after"] < data["compactions"][0]["tokens_before"]
    assert [s["reason"] for s in data["snapshots"]][:2] == ["created", "manual"]
    log = messages_from_dict(data["log"])
    assert [m.content for m in log] == [m.content for m in made["memory"].log("sess-1")]


def test_threads_show_shows_tool_calls(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "threads", "show", "agent-1", "--db", str(db))
    assert code == 0
    assert '-> read_file({"path": "a.py"})' in out
    assert "tool read_file: contents of a.py" in out


def test_export_jsonl_is_the_full_log_not_the_compacted_view(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    memory: RollingSnapshotMemory = made["memory"]
    assert len(memory.messages("sess-1")) < len(memory.log("sess-1"))  # compacted view
    code, out, _ = run(capsys, "threads", "export", "sess-1", "--format", "jsonl", "--db", str(db))
    assert code == 0
    exported = messages_from_dict([json.loads(line) for line in out.splitlines()])
    full = memory.log("sess-1")
    assert [(m.type, m.content, m.id) for m in exported] == [
        (m.type, m.content, m.id) for m in full
    ]


def test_export_markdown_to_a_file(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "t.md"
    code, out, err = run(
        capsys, "threads", "export", "agent-1", "--format", "md", "-o", str(target), "--db", str(db)
    )
    assert code == 0
    assert out == ""
    assert "wrote 6 messages" in err
    text = target.read_text()
    assert text.startswith("# Thread agent-1")
    assert "## 3. tool read_file" in text
    assert "- tool call `read_file" in text
    assert "second answer" in text


def test_rollback_a_session_to_a_named_snapshot(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "threads", "rollback", "sess-1", "after-first", "--db", str(db))
    assert code == 0
    assert "rolled back to after-first" in out
    saver = open_sqlite_checkpointer(db)
    memory = RollingSnapshotMemory(
        "kimi-k2.6", api_key="unused", checkpointer=saver, tools=[read_file]
    )
    assert [m.type for m in memory.log("sess-1")] == ["system", "human", "ai"]
    assert len(memory.list_snapshots("sess-1")) >= 2  # nothing deleted
    saver.conn.close()


def test_rollback_a_plain_thread_to_a_checkpoint(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    agent = made["agent"]
    cfg = {"configurable": {"thread_id": "agent-1"}}
    first_turn = next(
        s for s in agent.get_state_history(cfg) if len(s.values.get("messages", [])) == 4
    )
    cp = first_turn.config["configurable"]["checkpoint_id"]
    data = run_json(capsys, "threads", "rollback", "agent-1", cp, "--db", str(db))
    assert data["head"] != cp
    rows = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", str(db))}
    assert rows["agent-1"]["messages"] == 4


def test_fork_a_session_at_a_snapshot_is_a_new_session(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(
        capsys, "threads", "fork", "sess-1", made["snap"], "--to", "sess-fork", "--db", str(db)
    )
    assert data["fork"] == "sess-fork"
    saver = open_sqlite_checkpointer(db)
    memory = RollingSnapshotMemory(
        "kimi-k2.6", api_key="unused", checkpointer=saver, tools=[read_file]
    )
    assert "sess-fork" in memory.sessions()
    assert [m.type for m in memory.log("sess-fork")] == ["system", "human", "ai"]
    assert len(memory.log("sess-1")) > 3  # the source is untouched
    saver.conn.close()


def test_fork_a_plain_thread_at_its_head(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "threads", "fork", "agent-1", "--db", str(db))
    assert code == 0
    new = out.strip().rsplit(" ", 1)[-1]
    assert new.startswith("agent-1-fork-")
    rows = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", str(db))}
    assert rows[new]["messages"] == rows["agent-1"]["messages"] == 6


def test_prune_keeps_rollback_points(
    db: Path, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    saver = open_sqlite_checkpointer(db)
    can_prune = type(saver).prune is not BaseCheckpointSaver.prune
    saver.conn.close()
    code, out, err = run(capsys, "threads", "prune", "--db", str(db))
    if not can_prune:
        assert "cannot prune finished turns" in one_line_error(code, out, err)
        return
    assert code == 0
    assert "pruned 2 thread(s)" in out
    rows = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", str(db))}
    assert rows["agent-1"]["messages"] == 6  # the head state is intact
    full = len(made["memory"].log("sess-1"))
    assert rows["sess-1"]["messages"] == full
    code, _, err = run(capsys, "threads", "rollback", "sess-1", "after-first", "--db", str(db))
    assert code == 0, err
    rows = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", str(db))}
    assert rows["sess-1"]["messages"] == 3  # the snapshot survived the pruning


def test_vacuum_reclaims_the_space_of_a_deleted_thread(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saver = open_sqlite_checkpointer(db)
    saver.delete_thread("sess-1")
    saver.conn.close()
    data = run_json(capsys, "threads", "vacuum", "--db", str(db))
    assert data["bytes_after"] < data["bytes_before"]
    code, out, _ = run(capsys, "threads", "vacuum", "--db", str(db))
    assert code == 0
    assert out.startswith("vacuumed: ")


@pytest.mark.subprocess
def test_emulator_command_forwards_its_options() -> None:
    # `kimi-context emulator ...` is the emulator's own command line: options pass through
    key = "sk-cli-emulator-key"
    argv = [sys.executable, "-m", "langchain_kimi_context", "emulator", "--port", "0"]
    proc = subprocess.Popen([*argv, "--api-key", key], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        ok = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        assert "kimi-k2.6" in {m["id"] for m in ok.json()["data"]}
        wrong = httpx.get(f"{base_url}/models", headers={"Authorization": "Bearer sk-other"})
        assert wrong.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_console_script_and_python_m_never_show_the_api_key(db: Path) -> None:
    env = {**os.environ, "MOONSHOT_API_KEY": SECRET}
    script = Path(sys.executable).with_name("kimi-context")
    commands = [
        [str(script), "threads", "show", "sess-1", "--db", str(db)],
        [
            sys.executable,
            "-m",
            "langchain_kimi_context",
            "threads",
            "fork",
            "agent-1",
            "--db",
            str(db),
        ],
        [
            sys.executable,
            "-m",
            "langchain_kimi_context",
            "threads",
            "show",
            "nope",
            "--db",
            str(db),
        ],
    ]
    if not script.exists():
        commands = commands[1:]
    codes = []
    for cmd in commands:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert SECRET not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        codes.append(done.returncode)
    assert codes[-1] == 2
    assert set(codes[:-1]) == {0}
    assert SECRET.encode() not in db.read_bytes()


def test_threads_of_create_agent_with_the_middleware(
    emulator: KimiEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.sqlite import SqliteSaver

    from langchain_kimi_context import ContextPolicy, KimiContextMiddleware

    path = tmp_path / "plain.sqlite"
    conn = sqlite3.connect(path, check_same_thread=False)
    small = ContextPolicy(
        context_window=32_000,
        compact_trigger_tokens=4_000,
        compact_trigger_ratio=None,
        compact_reserve_tokens=None,
        compact_target_share=0.05,
    )
    agent = create_agent(
        KimiChatModel(model="kimi-k2.6", base_url=emulator.base_url, api_key=emulator.api_key),
        tools=[read_file],
        middleware=[KimiContextMiddleware(small)],
        checkpointer=SqliteSaver(conn),
    )
    cfg = {"configurable": {"thread_id": "lc-1"}}
    for i in range(8):
        prompt = f'Refactor m{i}.py\n@call read_file {{"path": "m{i}.py"}}\n@reply 600'
        agent.invoke({"messages": [("user", prompt)]}, cfg)
    conn.close()
    (row,) = run_json(capsys, "threads", "list", "--db", str(path))
    assert row["thread_id"] == "lc-1"
    assert row["turns"] == 8
    assert row["calls"] == 16  # read from the replies' usage
    assert row["cost"] > 0
    data = run_json(capsys, "threads", "show", "lc-1", "--db", str(path))
    assert data["usage"]["input_tokens"] > 0
    assert data["compactions"], "the middleware's records are shown"
    assert all(c["tokens_after"] < c["tokens_before"] for c in data["compactions"])


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "argv",
    [
        ["threads", "show", "nope"],
        ["threads", "export", "nope"],
        ["threads", "rollback", "nope", "snap-1"],
        ["threads", "fork", "nope"],
        ["threads", "prune", "nope"],
    ],
    ids=["show", "export", "rollback", "fork", "prune"],
)
def test_unknown_thread_is_one_line_exit_2(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    line = one_line_error(*run(capsys, *argv, "--db", str(db)))
    assert "no thread 'nope'" in line


@pytest.mark.parametrize(
    ("thread", "ref", "expected"),
    [
        ("sess-1", "snap-0000", "no snapshot 'snap-0000' of thread 'sess-1'"),
        ("agent-1", "snap-0000", "not a memory session"),
        ("agent-1", "not-a-checkpoint", "has no checkpoint 'not-a-checkpoint'"),
    ],
    ids=["session-snapshot", "thread-snapshot", "checkpoint"],
)
def test_unknown_snapshot_is_one_line_exit_2(
    db: Path, capsys: pytest.CaptureFixture[str], thread: str, ref: str, expected: str
) -> None:
    for command in ("rollback", "fork"):
        line = one_line_error(*run(capsys, "threads", command, thread, ref, "--db", str(db)))
        assert expected in line


def test_fork_onto_an_existing_thread_is_refused(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(
        *run(capsys, "threads", "fork", "agent-1", "--to", "sess-1", "--db", str(db))
    )
    assert "already exists" in line


def test_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(*run(capsys, "threads", "list", "--db", str(tmp_path / "no.sqlite")))
    assert "no checkpoint database at" in line
    assert not (tmp_path / "no.sqlite").exists()  # never created by a read


def test_directory_instead_of_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(*run(capsys, "threads", "list", "--db", str(tmp_path)))
    assert "is a directory" in line


def test_non_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not a database\n" * 100)
    before = path.read_bytes()
    line = one_line_error(*run(capsys, "threads", "list", "--db", str(path)))
    assert "is not a SQLite database" in line
    assert path.read_bytes() == before


def test_sqlite_file_without_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    line = one_line_error(*run(capsys, "threads", "show", "x", "--db", str(path)))
    assert "without LangGraph checkpoints" in line


def test_locked_database(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = sqlite3.connect(db, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO checkpoints SELECT * FROM checkpoints LIMIT 0")
    try:
        line = one_line_error(*run(capsys, "threads", "list", "--db", str(db)))
    finally:
        holder.rollback()
        holder.close()
    assert "locked" in line


def test_unreadable_database(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        # root reads any file: make it unreadable by truncating its header instead
        path = tmp_path / "damaged.sqlite"
        data = bytearray(db.read_bytes())
        data[:16] = b"\x00" * 16
        path.write_bytes(bytes(data))
    else:
        path = tmp_path / "private.sqlite"
        shutil.copy(db, path)
        path.chmod(0)
    line = one_line_error(*run(capsys, "threads", "list", "--db", str(path)))
    assert str(path) in line


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["threads", "export", "x", "--format", "pdf"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ----------------------------------------------------------------------------- postgres
def test_postgres_dsn_list_show_fork(
    postgres_schema: str, emulator: KimiEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    pg_dsn = postgres_schema  # a fresh schema of the run's database (tests/postgres_fixtures.py)
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    with psycopg.connect(pg_dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as c:
        saver = PostgresSaver(c)
        saver.setup()
        _fill(None, emulator, checkpointer=saver)
    rows = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", pg_dsn)}
    assert set(rows) == {"agent-1", "sess-1"}
    assert rows["agent-1"]["messages"] == 6
    code, out, _ = run(capsys, "threads", "show", "sess-1", "--db", pg_dsn)
    assert code == 0
    assert "compactions: 1" in out
    assert pg_dsn not in out
    data = run_json(capsys, "threads", "fork", "agent-1", "--to", "pg-fork", "--db", pg_dsn)
    assert data["fork"] == "pg-fork"
    rows = {r["thread_id"]: r for r in run_json(capsys, "threads", "list", "--db", pg_dsn)}
    assert rows["pg-fork"]["messages"] == 6
    sizes = run_json(capsys, "threads", "vacuum", "--db", pg_dsn)
    assert sizes["bytes_before"] > 0
    assert sizes["bytes_after"] > 0
    line = one_line_error(*run(capsys, "threads", "show", "nope", "--db", pg_dsn))
    assert "no thread 'nope'" in line
    assert pg_dsn not in line


def test_unreachable_postgres_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    pytest.importorskip("langgraph.checkpoint.postgres")
    dsn = "postgresql://postgres:hunter2@127.0.0.1:1/none"
    line = one_line_error(*run(capsys, "threads", "list", "--db", dsn))
    assert "cannot open the PostgreSQL database" in line
    assert "hunter2" not in line
