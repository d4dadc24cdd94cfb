"""MCP tools on create_kimi_agent / RollingSnapshotMemory with real MCP servers.

The servers are ``mcp_test_server.py`` (Python ``mcp`` SDK) over stdio and streamable
HTTP on 127.0.0.1 (free ports chosen at run time); the model is the Kimi emulator over
HTTP, scripted with ``@call`` directives. Every agent scenario runs under ``invoke`` and
``ainvoke``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from langchain_kimi_context import ContextPolicy, KimiChatModel, RollingSnapshotMemory
from langchain_kimi_context.agent import AgentSettings, RetrySettings, create_kimi_agent
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.mcp import MCPToolset, mcp_status
from langchain_kimi_context.testing import KimiEmulator

pytestmark = pytest.mark.subprocess

SERVER = str(Path(__file__).with_name("mcp_test_server.py"))
FAST = RetrySettings(initial_interval=0.05, max_interval=0.2, max_retry_after=0.01, jitter=0)
MODES = ["invoke", "ainvoke"]


def stdio(name: str, *tools: str, hang_on_start: bool = False) -> dict[str, Any]:
    args = [SERVER, "--name", name]
    if tools:
        args += ["--only", ",".join(tools)]
    if hang_on_start:
        args.append("--hang-on-start")
    return {"transport": "stdio", "command": sys.executable, "args": [*args, "stdio"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpServer:
    """An MCP server over streamable HTTP in a subprocess, restartable on the same port."""

    def __init__(self, name: str, *tools: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.args = [sys.executable, SERVER, "--name", name]
        if tools:
            self.args += ["--only", ",".join(tools)]
        self.args += ["http", "--port", str(self.port)]
        if token:
            self.args += ["--token", token]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HttpServer:
        self.proc = subprocess.Popen(self.args, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("MCP test server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {"transport": "streamable_http", "url": self.url, **extra}


@pytest.fixture
def http_server() -> Iterator[Callable[..., HttpServer]]:
    started: list[HttpServer] = []

    def factory(name: str, *tools: str, token: str | None = None) -> HttpServer:
        server = HttpServer(name, *tools, token=token).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def model(emu: KimiEmulator) -> KimiChatModel:
    return KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)


def make_agent(emu: KimiEmulator, tmp_path: Path, servers: Any, **kw: Any) -> Any:
    settings = kw.pop("settings", AgentSettings(retry=FAST))
    return create_kimi_agent(
        model(emu),
        kw.pop("tools", ()),
        mcp_servers=servers,
        db_path=tmp_path / "agent.sqlite",
        settings=settings,
        sleep=lambda s: None,
        **kw,
    )


def make_memory(emu: KimiEmulator, tmp_path: Path, servers: Any) -> RollingSnapshotMemory:
    return RollingSnapshotMemory(
        model(emu),
        db_path=tmp_path / "mem.sqlite",
        settings=AgentSettings(retry=FAST),
        mcp_servers=servers,
        sleep=lambda s: None,
    )


def turn(agent: Any, mode: str, text: str, thread: str = "t") -> list[Any]:
    """One user turn; returns the messages it added."""
    cfg = {"configurable": {"thread_id": thread}}
    before = len((agent.get_state(cfg).values or {}).get("messages") or [])
    inp = {"messages": [("user", text)]}
    out = agent.invoke(inp, cfg) if mode == "invoke" else asyncio.run(agent.ainvoke(inp, cfg))
    msgs = out["messages"][before:]
    assert isinstance(msgs[-1], AIMessage)
    assert not msgs[-1].tool_calls, "turn did not complete"
    return msgs


def results(msgs: list[Any]) -> list[ToolMessage]:
    return [m for m in msgs if isinstance(m, ToolMessage)]


@pytest.fixture(autouse=True)
def _close_toolsets() -> Iterator[None]:
    """Stop stdio servers started by a test as soon as it ends."""
    yield
    import gc

    gc.collect()


# ------------------------------------------------------------------- healthy servers
def test_healthy_servers_tools_work_and_status_connected(
    emulator: KimiEmulator, tmp_path: Path, http_server: Any
) -> None:
    web = http_server("web", "search")
    agent = make_agent(
        emulator, tmp_path, {"files": stdio("files", "echo", "whoami"), "web": web.connection()}
    )
    status = mcp_status(agent)
    assert {n: s.state for n, s in status.items()} == {"files": "connected", "web": "connected"}
    assert status["files"].tools == ("echo", "whoami")

    for mode in MODES:
        script = '@call echo {"text": "hi"}\n@call search {"query": "kimi"}\n@say done'
        msgs = turn(agent, mode, script, thread=mode)
        out = results(msgs)
        assert [m.content for m in out] == ["files echoes: hi", "web found 3 documents about kimi"]
        assert all(m.status != "error" for m in out)
        assert msgs[-1].content == "done"
        # the model was offered the MCP tools with their schemas
        sent = emulator.requests[-1].body["tools"]
        assert {t["function"]["name"] for t in sent} == {"echo", "whoami", "search"}


def test_oversized_output_is_capped_before_history(emulator: KimiEmulator, tmp_path: Path) -> None:
    policy = ContextPolicy(tool_result_hard_max_chars=4_000, tool_result_min_keep_chars=1_000)
    agent = make_agent(emulator, tmp_path, {"files": stdio("files", "big")}, policy=policy)
    for mode in MODES:
        msgs = turn(agent, mode, '@call big {"chars": 300000}\n@say read it', thread=mode)
        (result,) = results(msgs)
        assert len(result.content) < 4_500
        assert "characters removed" in result.content
        assert result.content.startswith("000000 lorem ipsum")
        # the stored log holds the capped text, not the 300 KB output
        stored = agent.get_state({"configurable": {"thread_id": mode}}).values["messages"]
        assert max(len(str(m.content)) for m in stored) < 4_500
        assert result.artifact is None  # the structured copy was too big to keep


# ------------------------------------------------------------------- never starts
def test_servers_that_never_start_are_reported_and_skipped(
    emulator: KimiEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="langchain_kimi_context.mcp")
    servers = MCPToolset(
        {
            "good": stdio("good", "echo"),
            "missing": {"transport": "stdio", "command": str(tmp_path / "no-such-server")},
            "mute": stdio("mute", hang_on_start=True),
            "offline": {
                "transport": "streamable_http",
                "url": f"http://127.0.0.1:{free_port()}/mcp",
            },
        },
        connect_timeout_s=8,  # a loaded CI machine starts a Python MCP server in seconds
        retry=FAST,
    )
    agent = make_agent(emulator, tmp_path, servers)
    status = mcp_status(agent)
    assert status["good"].state == "connected"
    assert status["missing"].state == "failed"
    assert "FileNotFoundError" in str(status["missing"].reason)
    assert status["mute"].state == "failed"
    assert "handshake" in str(status["mute"].reason)
    assert status["offline"].state == "failed"
    assert "ConnectError" in str(status["offline"].reason)
    assert all(not s.tools for n, s in status.items() if n != "good")
    warned = {r.args[0] for r in caplog.records if r.levelname == "WARNING"}
    assert warned >= {"missing", "mute", "offline"}

    for mode in MODES:
        msgs = turn(agent, mode, '@call echo {"text": "still here"}\n@say ok', thread=mode)
        assert results(msgs)[0].content == "good echoes: still here"
        assert msgs[-1].content == "ok"


def test_unauthorized_server_is_reported(
    emulator: KimiEmulator, tmp_path: Path, http_server: Any
) -> None:
    secret = "s3cr3t-token-value"
    locked = http_server("locked", "echo", token=secret)
    agent = make_agent(
        emulator,
        tmp_path,
        {
            "wrong": locked.connection(headers={"Authorization": "Bearer nope"}),
            "right": locked.connection(headers={"Authorization": f"Bearer {secret}"}),
        },
    )
    status = mcp_status(agent)
    assert status["wrong"].state == "unauthorized"
    assert "401" in str(status["wrong"].reason)
    assert status["right"].state == "connected"
    assert secret not in repr(status)
    assert secret not in repr(agent.get_graph().nodes)
    msgs = turn(agent, "invoke", '@call echo {"text": "x"}\n@say ok')
    assert results(msgs)[0].content == "locked echoes: x"


# ------------------------------------------------------------------- hangs past timeout
def test_tool_that_hangs_past_the_timeout(emulator: KimiEmulator, tmp_path: Path) -> None:
    settings = AgentSettings(retry=FAST, tool_timeout_s=1.0)
    agent = make_agent(
        emulator, tmp_path, {"slow": stdio("slow", "hang", "echo")}, settings=settings
    )
    for n, mode in enumerate(MODES, 1):
        marker = tmp_path / f"cancelled-{mode}"
        script = (
            f'@call hang {{"seconds": 60, "marker": "{marker}"}}\n'
            '@call echo {"text": "meanwhile"}\n@then\n'
            '@call echo {"text": "after"}\n@say finished'
        )
        msgs = turn(agent, mode, script, thread=mode)
        hung, meanwhile, after = results(msgs)
        assert hung.status == "error"
        assert "'hang' (server 'slow') timed out after 1 s" in hung.content
        assert meanwhile.content == "slow echoes: meanwhile"  # a parallel call on the server
        assert after.content == "slow echoes: after"  # the same server still answers
        assert msgs[-1].content == "finished"
        status = mcp_status(agent)["slow"]
        assert status.state == "connected"
        assert status.failed_calls == n
        # the model saw the failure text and could choose another path
        sent = emulator.requests[-2].body["messages"]
        assert any("timed out" in str(m.get("content")) for m in sent if m["role"] == "tool")
        # the server was told to stop the abandoned call (notifications/cancelled)
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "cancelled"


def test_per_server_and_per_tool_timeouts(tmp_path: Path) -> None:
    ts = MCPToolset(
        {"a": stdio("a", "hang"), "b": stdio("b", "hang", "echo")},
        timeout_s=30,
        server_timeouts={"a": 0.5},
        tool_timeouts={"b_hang": 0.7},
    )
    tools = {t.name: t for t in ts.load()}
    assert ts.timeout_for("a", "a_hang") == 0.5
    assert ts.timeout_for("b", "echo") == 30
    out_a = tools["a_hang"].invoke(
        {"type": "tool_call", "id": "1", "name": "a_hang", "args": {"seconds": 30}}
    )
    out_b = asyncio.run(
        tools["b_hang"].ainvoke(
            {"type": "tool_call", "id": "2", "name": "b_hang", "args": {"seconds": 30}}
        )
    )
    assert "timed out after 0.5 s" in out_a.content
    assert "timed out after 0.7 s" in out_b.content
    assert tools["echo"].invoke({"text": "ok"}) == "b echoes: ok"
    ts.close()
    with pytest.raises(KimiConfigurationError, match="unknown MCP servers"):
        MCPToolset({"a": stdio("a")}, server_timeouts={"zz": 1})


# ------------------------------------------------------------------- dies and comes back
def test_http_server_dies_mid_session_and_comes_back(
    emulator: KimiEmulator, tmp_path: Path, http_server: Any
) -> None:
    web = http_server("web", "search")
    agent = make_agent(emulator, tmp_path, {"web": web.connection()})
    call = '@call search {"query": "q"}\n@say done'
    found = "web found 3 documents about q"
    for n, mode in enumerate(MODES, 1):
        assert results(turn(agent, mode, call, thread=mode))[0].content == found

        web.stop()
        msgs = turn(agent, mode, call, thread=mode)
        (down,) = results(msgs)
        assert down.status == "error"
        assert "unreachable" in down.content
        assert msgs[-1].content == "done"  # the turn still completed
        assert mcp_status(agent)["web"].state == "failed"

        web.start()
        assert results(turn(agent, mode, call, thread=mode))[0].content == found
        status = mcp_status(agent)["web"]
        assert status.state == "connected"
        assert status.reconnects >= 1

        # restarted between two calls: the server no longer knows the session; the call
        # is answered by a new session at once (the old one was rejected, not run)
        web.stop()
        web.start()
        assert results(turn(agent, mode, call, thread=mode))[0].content == found
        assert mcp_status(agent)["web"].failed_calls == n


def test_stdio_server_that_crashes_is_restarted_on_next_call(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    agent = make_agent(emulator, tmp_path, {"proc": stdio("proc", "crash", "whoami")})
    for mode in MODES:
        first = results(turn(agent, mode, "@call whoami\n@say ok", thread=mode))[0].content
        msgs = turn(agent, mode, "@call crash\n@then\n@call whoami\n@say ok", thread=mode)
        crashed, again = results(msgs)
        assert crashed.status == "error"
        assert "not retried because it may already have run" in crashed.content
        assert again.status != "error"
        assert again.content.startswith("proc pid=")
        assert again.content != first  # a new server process answered
        assert mcp_status(agent)["proc"].state == "connected"


# ------------------------------------------------------------------- name collisions
def test_colliding_tool_names_get_the_server_prefix(
    emulator: KimiEmulator, tmp_path: Path, http_server: Any
) -> None:
    web = http_server("web", "search", "echo")

    def echo(text: str) -> str:
        """The application's own echo."""
        return f"app echoes: {text}"

    agent = make_agent(
        emulator,
        tmp_path,
        {"docs": stdio("docs", "search", "whoami"), "web": web.connection()},
        tools=[echo],
    )
    status = mcp_status(agent)
    assert status["docs"].tools == ("docs_search", "whoami")
    assert set(status["web"].tools) == {"web_search", "web_echo"}  # echo is the app's name
    script = (
        '@call docs_search {"query": "a"}\n@call web_search {"query": "b"}\n'
        '@call echo {"text": "c"}\n@call web_echo {"text": "d"}\n@say done'
    )
    for mode in MODES:
        assert [m.content for m in results(turn(agent, mode, script, thread=mode))] == [
            "docs found 3 documents about a",
            "web found 3 documents about b",
            "app echoes: c",
            "web echoes: d",
        ]


# ------------------------------------------------------------------- restart
def test_resumed_agent_rebuilds_mcp_tools_from_configuration(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    servers = {"files": stdio("files", "echo")}
    words = ["one", "two", "three"]
    for word, mode in zip(words, ["invoke", "ainvoke", "invoke"], strict=True):
        # each agent is a "new process": built from the same configuration and database
        agent = make_agent(emulator, tmp_path, servers)
        msgs = turn(agent, mode, f'@call echo {{"text": "{word}"}}\n@say ok', thread="s")
        assert results(msgs)[0].content == f"files echoes: {word}"
    state = agent.get_state({"configurable": {"thread_id": "s"}}).values
    stored = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
    assert stored == [f"files echoes: {w}" for w in words]
    assert SERVER not in (tmp_path / "agent.sqlite").read_bytes().decode("latin-1")


def test_memory_sessions_keep_mcp_tools_after_restart(
    emulator: KimiEmulator, tmp_path: Path
) -> None:
    servers = {"files": stdio("files", "echo")}

    def chat(mem: RollingSnapshotMemory, mode: str, sid: str, text: str) -> Any:
        return mem.chat(sid, text) if mode == "invoke" else asyncio.run(mem.achat(sid, text))

    plain = make_memory(emulator, tmp_path, None)
    older = plain.create_session(system="Created before the MCP servers were configured.")
    del plain
    mem = make_memory(emulator, tmp_path, servers)
    assert mcp_status(mem)["files"].state == "connected"
    assert mem.chat(older, "@say hello again").content == "hello again"
    sids = {mode: mem.create_session(system="Use tools.") for mode in MODES}
    for mode, sid in sids.items():
        assert chat(mem, mode, sid, '@call echo {"text": "one"}\n@say ok').content == "ok"
    del mem
    # no attach_tools: the tools come from mcp_servers
    again = make_memory(emulator, tmp_path, servers)
    for mode, sid in zip(reversed(MODES), sids.values(), strict=True):
        assert chat(again, mode, sid, '@call echo {"text": "two"}\n@say ok').content == "ok"
        tool_results = [m for m in again.messages(sid) if isinstance(m, ToolMessage)]
        assert [m.content for m in tool_results] == ["files echoes: one", "files echoes: two"]


def test_memory_session_resumed_while_a_server_is_down(
    emulator: KimiEmulator, tmp_path: Path, http_server: Any
) -> None:
    web = http_server("web", "search")
    servers = {"files": stdio("files", "echo"), "web": web.connection()}

    mem = make_memory(emulator, tmp_path, servers)
    sid = mem.create_session()
    mem.chat(sid, '@call search {"query": "a"}\n@say ok')
    del mem
    web.stop()
    again = make_memory(emulator, tmp_path, servers)  # "restart" while the web server is down
    assert mcp_status(again)["web"].state == "failed"
    for mode in MODES:
        text = '@call search {"query": "b"}\n@call echo {"text": "c"}\n@say still working'
        reply = again.chat(sid, text) if mode == "invoke" else asyncio.run(again.achat(sid, text))
        assert reply.content == "still working"
        search, echo = [m for m in again.messages(sid) if isinstance(m, ToolMessage)][-2:]
        assert search.status == "error"
        assert "its MCP server is not connected" in search.content
        assert "web: ConnectError" in search.content
        assert echo.content == "files echoes: c"


def test_bad_configuration_is_a_clear_error(emulator: KimiEmulator, tmp_path: Path) -> None:
    with pytest.raises(KimiConfigurationError, match="'transport' must be one of"):
        make_agent(emulator, tmp_path, {"x": {"url": "http://127.0.0.1:1/mcp"}})
    with pytest.raises(KimiConfigurationError, match="needs 'command'"):
        make_agent(emulator, tmp_path, {"x": {"transport": "stdio"}})
    with pytest.raises(KimiConfigurationError, match="mcp_servers must be"):
        make_agent(emulator, tmp_path, ["x"])


def test_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "mcp_agent.py"
    spec = importlib.util.spec_from_file_location("mcp_agent_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--timeout", "1"])
    assert {n: s["state"] for n, s in out["status"].items()} == {
        "notes": "connected",
        "tickets": "connected",
        "wiki": "failed",
    }
    names = [name for name, _, _ in out["tool_results"]]
    assert names == ["notes_search", "tickets_search", "slow_report"]
    assert out["tool_results"][-1][1] == "error"
    assert "timed out after 1 s" in out["tool_results"][-1][2]
    assert "wiki" in capsys.readouterr().out
