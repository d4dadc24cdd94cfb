"""MCP tool calls: MCPToolset (persistent, reconnecting sessions) vs the adapters' default.

Prints, in one run, against real MCP servers (this file started as a server with
``--serve stdio`` or ``--serve http --port N``):

1. Latency of sequential tool calls, median and p90 per call, over stdio and streamable
   HTTP: ``MCPToolset`` tools (one session kept per server, through the package's loop)
   vs ``MultiServerMCPClient(...).get_tools()`` tools (the langchain-mcp-adapters
   default: a new session, and for stdio a new server process, per call).
2. Isolation: loading tools from two healthy servers and one that is down:
   ``MultiServerMCPClient.get_tools()`` vs ``MCPToolset.load()``.

Run:  .venv/bin/python benchmarks/bench_mcp.py [--calls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ME = str(Path(__file__).resolve())


def serve(transport: str, port: int) -> None:
    from mcp.server.fastmcp import FastMCP

    server = FastMCP("bench", log_level="WARNING", port=port)

    @server.tool()
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    server.run("stdio" if transport == "stdio" else "streamable-http")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_http() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, ME, "--serve", "http", "--port", str(port)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def timed_calls(tool: Any, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        result = tool.invoke({"key": str(i)})
        out.append((time.perf_counter() - t0) * 1000)
        assert "value of" in str(result), result
    return out


def row(label: str, ms: list[float]) -> None:
    p90 = sorted(ms)[int(len(ms) * 0.9) - 1]
    print(f"  {label:44} median {statistics.median(ms):8.1f} ms   p90 {p90:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    from langchain_mcp_adapters.client import MultiServerMCPClient

    from langchain_kimi_context.mcp import MCPToolset

    proc, url = start_http()
    try:
        conns: dict[str, Any] = {
            "stdio": {
                "transport": "stdio",
                "command": sys.executable,
                "args": [ME, "--serve", "stdio"],
            },
            "http": {"transport": "streamable_http", "url": url},
        }
        print(f"1. {args.calls} sequential calls of one tool (sync invoke)")
        for name, conn in conns.items():
            ours = MCPToolset({name: conn})
            (tool,) = ours.load()
            row(f"{name}: MCPToolset (kept session)", timed_calls(tool, args.calls))
            ours.close()
            (plain,) = asyncio.run(MultiServerMCPClient({name: conn}).get_tools())

            def run_plain(i: int, plain: Any = plain) -> Any:
                return asyncio.run(plain.ainvoke({"key": str(i)}))

            ms = []
            for i in range(args.calls):
                t0 = time.perf_counter()
                assert "value of" in str(run_plain(i))
                ms.append((time.perf_counter() - t0) * 1000)
            row(f"{name}: adapters' default (session per call)", ms)

        print("2. loading tools from 2 healthy servers + 1 that is down")
        servers = {
            **conns,
            "down": {"transport": "streamable_http", "url": f"http://127.0.0.1:{free_port()}/mcp"},
        }
        t0 = time.perf_counter()
        try:
            tools = asyncio.run(MultiServerMCPClient(servers).get_tools())
            plain_result = f"{len(tools)} tools"
        except BaseException as exc:  # reporting what the plain way does
            plain_result = f"raises {type(exc).__name__}: no tools at all"
        print(
            f"  MultiServerMCPClient.get_tools(): {plain_result} ({time.perf_counter() - t0:.2f} s)"
        )
        t0 = time.perf_counter()
        toolset = MCPToolset(servers)
        tools = toolset.load()
        states = {n: s.state for n, s in toolset.status().items()}
        print(
            f"  MCPToolset.load(): {len(tools)} tools, status {states} "
            f"({time.perf_counter() - t0:.2f} s)"
        )
        toolset.close()
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
