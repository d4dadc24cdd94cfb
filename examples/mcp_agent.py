"""A Kimi agent with MCP tools: one server down, one slow tool, two servers sharing a name.

Runs offline: the model is the bundled Kimi emulator (real HTTP on 127.0.0.1) and the
MCP servers are this very file started as stdio servers (``--serve NAME``). The agent is
configured with three servers:

* ``notes`` and ``tickets``: healthy, both offer ``search`` (so the model sees
  ``notes_search`` and ``tickets_search``); ``tickets`` also offers ``slow_report``,
  which takes longer than the call timeout;
* ``wiki``: a streamable HTTP server that is not running.

It prints what ``mcp_status`` reports, then runs two turns (``invoke`` and ``ainvoke``):
the model searches both servers, then calls the slow tool, gets a timeout result and
answers anyway.

Run: ``python examples/mcp_agent.py`` (needs ``pip install 'langchain-kimi-context[mcp]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import ToolMessage

from langchain_kimi_context import KimiChatModel
from langchain_kimi_context.agent import AgentSettings, create_kimi_agent
from langchain_kimi_context.mcp import mcp_status
from langchain_kimi_context.testing import KimiEmulator


def serve(name: str) -> None:
    """Run this file as a small stdio MCP server called ``name``."""
    from mcp.server.fastmcp import FastMCP

    server = FastMCP(name, log_level="WARNING")

    @server.tool()
    def search(query: str) -> str:
        """Search this server's records."""
        return f"[{name}] 2 records match {query!r}: #{len(query)}1, #{len(query)}2"

    if name == "tickets":

        @server.tool()
        async def slow_report(weeks: int) -> str:
            """Build a report over the last ``weeks`` weeks (slow)."""
            await asyncio.sleep(weeks * 10)
            return "report ready"

    server.run("stdio")


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=2.0, help="MCP call timeout (s)")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return {}

    me = str(Path(__file__).resolve())
    servers = {
        name: {"transport": "stdio", "command": sys.executable, "args": [me, "--serve", name]}
        for name in ("notes", "tickets")
    }
    servers |= {
        "wiki": {"transport": "streamable_http", "url": f"http://127.0.0.1:{unused_port()}/mcp"}
    }
    with KimiEmulator() as emu, tempfile.TemporaryDirectory() as tmp:
        model = KimiChatModel(model="kimi-k2.6", base_url=emu.base_url, api_key=emu.api_key)
        started = time.perf_counter()
        agent = create_kimi_agent(
            model,
            mcp_servers=servers,
            settings=AgentSettings(tool_timeout_s=args.timeout),
            db_path=Path(tmp) / "mcp.sqlite",
        )
        print(f"agent built in {time.perf_counter() - started:.2f} s")
        status = mcp_status(agent)
        for name, s in status.items():
            print(f"  {name:8} {s.state:12} tools={list(s.tools)} {s.reason or ''}")

        config = {"configurable": {"thread_id": "mcp-demo"}}
        first = agent.invoke(
            {
                "messages": [
                    (
                        "user",
                        'Find the login bug.\n@call notes_search {"query": "login"}\n'
                        '@call tickets_search {"query": "login"}\n@say Found it in both.',
                    )
                ]
            },
            config,
        )
        second = asyncio.run(
            agent.ainvoke(
                {
                    "messages": [
                        (
                            "user",
                            'Weekly report please.\n@call slow_report {"weeks": 4}\n'
                            "@say The report timed out; here is what I know instead.",
                        )
                    ]
                },
                config,
            )
        )
        tool_results = [m for m in second["messages"] if isinstance(m, ToolMessage)]
        for m in tool_results:
            print(f"  tool {m.name}: {m.status}: {str(m.content)[:100]}")
        print("answers:", first["messages"][-1].content, "|", second["messages"][-1].content)
        return {
            "status": {n: s.to_dict() for n, s in status.items()},
            "tool_results": [(m.name, m.status, str(m.content)) for m in tool_results],
            "answers": [first["messages"][-1].content, second["messages"][-1].content],
        }


if __name__ == "__main__":
    main()
