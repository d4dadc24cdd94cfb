"""A real MCP server for the MCP tests (Python ``mcp`` SDK, FastMCP).

Run as a script::

    python mcp_test_server.py --name alpha stdio
    python mcp_test_server.py --name beta http --port 8765 [--token secret]
    python mcp_test_server.py --name slow stdio --hang-on-start

Tools: ``echo``, ``search`` (offered by every server, so two servers collide),
``big`` (a long output), ``hang`` (sleeps), ``crash`` (kills the server process) and
``whoami`` (server name and process id).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


def build(name: str, only: set[str] | None = None) -> object:
    from mcp.server.fastmcp import FastMCP

    server = FastMCP(name, log_level="WARNING")

    def tool(fn):  # type: ignore[no-untyped-def]
        return server.tool()(fn) if only is None or fn.__name__ in only else fn

    @tool
    def echo(text: str) -> str:
        """Echo the text back."""
        return f"{name} echoes: {text}"

    @tool
    def search(query: str) -> str:
        """Search this server's documents."""
        return f"{name} found 3 documents about {query}"

    @tool
    def big(chars: int) -> str:
        """Return a long text of about ``chars`` characters."""
        line = "lorem ipsum dolor sit amet " * 3
        lines = [f"{i:06d} {line}" for i in range(chars // (len(line) + 8) + 1)]
        return "\n".join(lines)[:chars]

    @tool
    async def hang(seconds: float, marker: str = "") -> str:
        """Sleep for ``seconds`` before answering (writes ``marker`` if cancelled)."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if marker:
                with open(marker, "w") as f:
                    f.write("cancelled")
            raise
        return "woke up"

    @tool
    def crash() -> str:
        """Kill this server process."""
        os._exit(3)

    @tool
    def whoami() -> str:
        """Name and process id of this server."""
        return f"{name} pid={os.getpid()}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="test")
    parser.add_argument("--hang-on-start", action="store_true")
    parser.add_argument("--only", help="comma-separated tool names to offer (default: all)")
    sub = parser.add_subparsers(dest="transport", required=True)
    sub.add_parser("stdio")
    http = sub.add_parser("http")
    http.add_argument("--port", type=int, required=True)
    http.add_argument("--token")
    args = parser.parse_args()
    if args.hang_on_start:
        time.sleep(3600)
    server = build(args.name, set(args.only.split(",")) if args.only else None)
    if args.transport == "stdio":
        server.run("stdio")  # type: ignore[attr-defined]
        return

    import uvicorn
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import PlainTextResponse

    app = server.streamable_http_app()  # type: ignore[attr-defined]
    token = args.token

    async def check_token(request, call_next):  # type: ignore[no-untyped-def]
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return PlainTextResponse("bad token", status_code=401)
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=check_token)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
