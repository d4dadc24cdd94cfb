"""MCPToolset: the LangChain tools of several MCP servers, isolated from each other.

Rules:

* Loading connects to every server at once; a server that does not start, refuses the
  connection, fails the handshake or refuses the credentials is recorded in
  :meth:`MCPToolset.status` (``failed`` / ``unauthorized`` with the reason) and skipped.
  The others' tools are returned.
* Tools are converted by langchain-mcp-adapters (schemas, content blocks, MCP errors) on
  top of a :class:`~langchain_kimi_context.mcp.link.ServerLink` per server (persistent
  session, call timeout, retries, reconnect).
* A tool name offered by more than one server (or already used by ``reserved_names``) is
  exposed as ``<server>_<name>`` for every server that offers it.
* A call that fails (MCP error result, timeout, server unreachable) returns a
  ``ToolMessage`` with ``status="error"`` whose text says what failed and why, so the
  model can choose another path; it never raises into the run.
* Text output longer than ``max_output_chars`` is cut with the truncation policy's rule
  (:func:`~langchain_kimi_context.context.truncation.truncate_text`) before it is
  returned, so it never enters the history whole; a structured-content artifact larger
  than the cap is dropped (its text is in the content).
* Every tool has a sync and an async path; both run the MCP I/O on the package's MCP loop.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, cast

from langchain_core.messages.content import create_text_block
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_mcp_adapters.sessions import Connection
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp import ClientSession
from mcp.types import CallToolResult
from mcp.types import Tool as MCPToolSpec

from langchain_kimi_context.agent.retry import RetrySettings
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.truncation import per_result_cap_chars, truncate_text
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.mcp._loop import run_async, run_sync
from langchain_kimi_context.mcp.link import (
    MCPCallTimeoutError,
    MCPServerStatus,
    MCPServerUnavailableError,
    ServerLink,
    describe_error,
)

__all__ = ["DEFAULT_MCP_TIMEOUT_S", "MCPToolset"]

DEFAULT_MCP_TIMEOUT_S = 60.0
_TRANSPORTS = {
    "stdio": "command",
    "streamable_http": "url",
    "streamable-http": "url",
    "http": "url",
    "sse": "url",
    "websocket": "url",
}
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]+")


def _validate(servers: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(servers, Mapping):
        raise KimiConfigurationError(
            f"mcp_servers must be a mapping {{server name: connection dict}}, got "
            f"{type(servers).__name__}; e.g. {{'files': {{'transport': 'stdio', "
            "'command': 'python', 'args': ['server.py']}}}}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, conn in servers.items():
        if not isinstance(name, str) or not name.strip():
            raise KimiConfigurationError(f"MCP server names must be non-empty strings: {name!r}")
        if not isinstance(conn, Mapping):
            raise KimiConfigurationError(
                f"MCP server {name!r}: the connection must be a langchain-mcp-adapters "
                f"connection dict, got {type(conn).__name__}"
            )
        transport = conn.get("transport")
        if transport not in _TRANSPORTS:
            raise KimiConfigurationError(
                f"MCP server {name!r}: 'transport' must be one of {sorted(_TRANSPORTS)} "
                f"(got {transport!r})"
            )
        required = _TRANSPORTS[str(transport)]
        if not conn.get(required):
            raise KimiConfigurationError(
                f"MCP server {name!r}: a {transport} connection needs {required!r}"
            )
        conn = dict(conn)
        if transport == "stdio":
            conn.setdefault("args", [])
        out[name] = conn
    return out


def _positive(value: float, what: str) -> float:
    if not value > 0:
        raise KimiConfigurationError(f"{what} must be > 0 seconds (got {value!r})")
    return float(value)


def _exposed_names(
    offered: Mapping[str, list[str]], reserved: Iterable[str]
) -> dict[tuple[str, str], str]:
    """``{(server, tool): name the model sees}``: colliding names get the server prefix."""
    counts: dict[str, int] = {}
    for names in offered.values():
        for n in set(names):
            counts[n] = counts.get(n, 0) + 1
    taken = set(reserved)
    out: dict[tuple[str, str], str] = {}
    for server, names in offered.items():
        prefix = _NAME_OK.sub("_", server).strip("_") or "mcp"
        for n in names:
            exposed = n if counts[n] == 1 and n not in taken else f"{prefix}_{n}"[:64]
            if exposed in out.values() or exposed in set(reserved):
                raise KimiConfigurationError(
                    f"MCP tool {n!r} of server {server!r} cannot be given a unique name "
                    f"({exposed!r} is taken); rename the server"
                )
            out[(server, n)] = exposed
    return out


class _ToolSession:
    """What the adapters' tool sees as its session: the link, with this tool's timeout."""

    def __init__(self, link: ServerLink, timeout_s: float, retry_in_flight: bool) -> None:
        self.link = link
        self.timeout_s = timeout_s
        self.retry_in_flight = retry_in_flight

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any
    ) -> CallToolResult:
        return await self.link.call_tool(
            name,
            arguments,
            timeout_s=self.timeout_s,
            retry_in_flight=self.retry_in_flight,
            **kwargs,
        )


def _close_links(links: list[ServerLink]) -> None:
    for link in links:
        link.close_soon()


class MCPToolset:
    """The tools of several MCP servers, with per-server status, timeouts and recovery.

    Args:
        servers: ``{server name: langchain-mcp-adapters connection dict}`` (stdio,
            streamable HTTP, SSE or websocket). The dicts are copied and never shown in
            reprs, statuses or logs (they may hold tokens).
        timeout_s: Default bound of one tool call, retries and reconnects included.
        server_timeouts: ``{server name: seconds}`` overrides.
        tool_timeouts: ``{tool name as the model sees it: seconds}`` overrides (win over
            the server's).
        connect_timeout_s: Bound on starting/connecting to a server plus the handshake.
        retry: Attempts and backoff for transport errors (default ``RetrySettings()``).
        max_output_chars: Cap of a tool's text output (``None``: the truncation policy's
            per-result cap for ``policy`` and its window).
        policy: Truncation rules for the cap (default ``ContextPolicy()``).

    Raises:
        KimiConfigurationError: A malformed connection or timeout.

    Example:
        >>> ts = MCPToolset({"files": {"transport": "stdio", "command": "mcp-files"}},
        ...                 server_timeouts={"files": 10})
        >>> ts.timeout_for("files", "read_file"), ts
        (10.0, MCPToolset(['files'], loaded=False))
        >>> ts.load()  # doctest: +SKIP
        [StructuredTool(name='read_file', ...)]
        >>> ts.status()["files"].state  # doctest: +SKIP
        'connected'
    """

    def __init__(
        self,
        servers: Mapping[str, Connection | Mapping[str, Any]],
        *,
        timeout_s: float = DEFAULT_MCP_TIMEOUT_S,
        server_timeouts: Mapping[str, float] | None = None,
        tool_timeouts: Mapping[str, float] | None = None,
        connect_timeout_s: float = 30.0,
        retry: RetrySettings | None = None,
        max_output_chars: int | None = None,
        policy: ContextPolicy | None = None,
    ) -> None:
        conns = _validate(servers)
        self.timeout_s = _positive(timeout_s, "timeout_s")
        self.server_timeouts = {
            k: _positive(v, f"server_timeouts[{k!r}]") for k, v in (server_timeouts or {}).items()
        }
        unknown = set(self.server_timeouts) - set(conns)
        if unknown:
            raise KimiConfigurationError(
                f"server_timeouts names unknown MCP servers {sorted(unknown)}; "
                f"known: {sorted(conns)}"
            )
        self.tool_timeouts = {
            k: _positive(v, f"tool_timeouts[{k!r}]") for k, v in (tool_timeouts or {}).items()
        }
        _positive(connect_timeout_s, "connect_timeout_s")
        if max_output_chars is not None and max_output_chars < 1:
            raise KimiConfigurationError(f"max_output_chars must be >= 1 (got {max_output_chars})")
        self.policy = policy or ContextPolicy()
        self.max_output_chars = max_output_chars
        self.links = {
            name: ServerLink(name, conn, connect_timeout_s=connect_timeout_s, retry=retry)
            for name, conn in conns.items()
        }
        self._tools: list[BaseTool] | None = None
        self._stand_ins: dict[str, BaseTool] = {}
        self._load_lock = threading.Lock()
        weakref.finalize(self, _close_links, list(self.links.values()))

    def __repr__(self) -> str:
        return f"MCPToolset({sorted(self.links)}, loaded={self._tools is not None})"

    # ------------------------------------------------------------------ config
    def timeout_for(self, server: str, tool: str) -> float:
        """The call timeout of ``tool`` (the name the model sees) on ``server``.

        Args:
            server: Server name.
            tool: Tool name as exposed.

        Returns:
            Seconds.
        """
        return self.tool_timeouts.get(tool, self.server_timeouts.get(server, self.timeout_s))

    def output_cap(self) -> int:
        """Characters a tool's text output may keep.

        Returns:
            ``max_output_chars`` or the policy's per-result cap for its window.
        """
        if self.max_output_chars is not None:
            return self.max_output_chars
        window = resolve_context_window(self.policy).window
        return per_result_cap_chars(self.policy, window)

    # ------------------------------------------------------------------ loading
    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` ran."""
        return self._tools is not None

    @property
    def tools(self) -> list[BaseTool]:
        """The loaded tools (empty before :meth:`load`)."""
        return list(self._tools or [])

    def load(self, *, reserved_names: Iterable[str] = ()) -> list[BaseTool]:
        """Connect to every server and return the tools of those that answered.

        Blocks the calling thread (at most ``connect_timeout_s`` plus listing); from
        async code use :meth:`aload`. Loading twice returns the first result.

        Args:
            reserved_names: Names already taken (e.g. the application's own tools);
                MCP tools with these names get the server prefix.

        Returns:
            The tools.
        """
        with self._load_lock:
            if self._tools is None:
                self._tools = run_sync(self._load(set(reserved_names)))
        return list(self._tools)

    async def aload(self, *, reserved_names: Iterable[str] = ()) -> list[BaseTool]:
        """Async :meth:`load`.

        Args:
            reserved_names: Names already taken.

        Returns:
            The tools.
        """
        if self._tools is None:
            self._tools = await run_async(self._load(set(reserved_names)))
        return list(self._tools)

    async def _list(self, link: ServerLink) -> list[MCPToolSpec]:
        await link.connect()
        specs: list[MCPToolSpec] = []
        cursor: str | None = None
        for _ in range(1000):
            page = await link.list_tools(cursor)
            specs.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                break
        return specs

    async def _load(self, reserved: set[str]) -> list[BaseTool]:
        import asyncio

        names = list(self.links)
        listed = await asyncio.gather(
            *(self._list(self.links[n]) for n in names), return_exceptions=True
        )
        offered: dict[str, list[MCPToolSpec]] = {}
        for name, result in zip(names, listed, strict=True):
            if isinstance(result, BaseException):
                continue  # the link's status says why
            offered[name] = result
        exposed = _exposed_names(
            {s: [t.name for t in specs] for s, specs in offered.items()}, reserved
        )
        tools: list[BaseTool] = []
        for server, specs in offered.items():
            link = self.links[server]
            for spec in specs:
                tools.append(self._wrap(link, spec, exposed[(server, spec.name)]))
            link.set_tools(tuple(exposed[(server, s.name)] for s in specs))
        return tools

    # ------------------------------------------------------------------ tools
    def _wrap(self, link: ServerLink, spec: MCPToolSpec, name: str) -> BaseTool:
        timeout = self.timeout_for(link.name, name)
        hints = spec.annotations
        safe = bool(hints and (hints.readOnlyHint or hints.idempotentHint))
        inner = convert_mcp_tool_to_langchain_tool(
            cast(ClientSession, _ToolSession(link, timeout, safe)), spec, server_name=link.name
        )
        coroutine = inner.coroutine  # type: ignore[attr-defined]
        where = f"MCP tool {spec.name!r} (server {link.name!r})"

        async def acall(**kwargs: Any) -> tuple[Any, Any]:
            try:
                content, artifact = await coroutine(**kwargs)
            except MCPCallTimeoutError as exc:
                raise ToolException(
                    f"Error: {where} timed out after {exc.timeout_s:g} s and was cancelled. "
                    "Try another way or a smaller request."
                ) from exc
            except MCPServerUnavailableError as exc:
                if exc.in_flight:
                    raise ToolException(
                        f"Error: {where} lost its connection during the call ({exc.reason}); "
                        "it was not retried because it may already have run. The server is "
                        "reconnected on the next call."
                    ) from exc
                raise ToolException(
                    f"Error: {where} could not run: the server is unreachable after "
                    f"{exc.attempts} attempt(s) ({exc.reason}). Its tools may work again "
                    "later; meanwhile use another way."
                ) from exc
            except ToolException as exc:  # the server ran the tool and reported an error
                raise ToolException(f"Error: {where} failed: {exc}") from exc
            except Exception as exc:
                raise ToolException(f"Error: {where} failed: {describe_error(exc)}") from exc
            return self._cap(content, artifact)

        def call(**kwargs: Any) -> tuple[Any, Any]:
            return run_sync(acall(**kwargs))

        return StructuredTool(
            name=name,
            description=inner.description,
            args_schema=inner.args_schema,
            func=call,
            coroutine=acall,
            response_format="content_and_artifact",
            handle_tool_error=True,
            metadata={**(inner.metadata or {}), "mcp_server": link.name, "mcp_tool": spec.name},
        )

    def _cap(self, content: Any, artifact: Any) -> tuple[Any, Any]:
        if not isinstance(content, list):
            return content, artifact
        cap = self.output_cap()
        texts = [str(b.get("text", "")) for b in content if b.get("type") == "text"]
        others = [b for b in content if b.get("type") != "text"]
        text = "\n".join(texts)
        if len(text) > cap:
            text = truncate_text(text, cap, self.policy)[0]
        if artifact is not None and len(json.dumps(artifact, default=str)) > cap:
            artifact = None
        if not others:
            return text, artifact
        return ([create_text_block(text=text)] if text else []) + others, artifact

    def stand_in(self, name: str, down: Mapping[str, MCPServerStatus]) -> BaseTool:
        """A tool named ``name`` that answers that its MCP server is not connected.

        Args:
            name: The tool name a resumed session uses.
            down: The servers that are not connected (their statuses).

        Returns:
            The stand-in (one per name, reused).
        """
        if name not in self._stand_ins:
            servers = "; ".join(f"{n}: {s.reason or s.state}" for n, s in down.items())
            text = (
                f"Error: tool {name!r} is unavailable: its MCP server is not connected in "
                f"this process ({servers}). Use another way."
            )

            def fail(**_: Any) -> str:
                raise ToolException(text)

            async def afail(**_: Any) -> str:
                raise ToolException(text)

            self._stand_ins[name] = StructuredTool(
                name=name,
                description="Unavailable now: its MCP server is not connected.",
                args_schema={"type": "object", "properties": {}},
                func=fail,
                coroutine=afail,
                handle_tool_error=True,
                metadata={"mcp_stand_in": True},
            )
        return self._stand_ins[name]

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, MCPServerStatus]:
        """Status of every server, in configuration order.

        Returns:
            ``{server name: MCPServerStatus}``.
        """
        return {name: link.status() for name, link in self.links.items()}

    def close(self) -> None:
        """Close every session (stdio servers exit). Tools reconnect if called again."""
        run_sync(self._aclose())

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await run_async(self._aclose())

    async def _aclose(self) -> None:
        for link in self.links.values():
            await link.aclose()
