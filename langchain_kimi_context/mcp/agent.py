"""MCP servers on ``create_kimi_agent`` and ``RollingSnapshotMemory``: building and status.

``create_kimi_agent(..., mcp_servers=...)`` and ``RollingSnapshotMemory(...,
mcp_servers=...)`` call :func:`with_mcp_tools` while they are built. Rules:

* ``mcp_servers`` is ``{server name: langchain-mcp-adapters connection dict}`` or an
  :class:`~langchain_kimi_context.mcp.toolset.MCPToolset` (for per-server timeouts and
  other options). With a plain mapping the MCP call timeout is the agent's
  ``settings.tool_timeout_s`` (default 60 s; ``settings.tool_timeouts`` overrides per
  tool), transport retries follow ``settings.retry``, and outputs are capped at the
  truncation policy's per-result cap for the model's window.
* The agent's own tool timeout for an MCP tool is set a little above the MCP timeout, so
  the MCP layer answers first (and cancels the call cleanly); the agent's stays a backstop.
  While a server is down, ``settings.tool_timeouts`` entries naming no known tool are
  dropped with a warning (they are probably that server's tools) instead of failing.
* MCP tools are never checkpointed: they are rebuilt from the configuration every time
  the agent or memory is built, so a resumed session (same thread id / session id in a
  new process) has them again without the application attaching them.
* :func:`mcp_status` tells the application which servers are connected.
* A memory session resumed while one of its MCP servers is down gets stand-ins for the
  tools nobody offers now (:func:`stand_in_tools`): calling one answers that its server
  is not connected, so the session goes on with the other tools.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from langchain_kimi_context.agent.state import AgentSettings
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.truncation import per_result_cap_chars
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.mcp.link import MCPServerStatus
from langchain_kimi_context.mcp.toolset import MCPToolset

__all__ = ["bind_toolset", "mcp_status", "stand_in_tools", "with_mcp_tools"]

logger = logging.getLogger(__name__)

# runner (or memory) -> its toolset, for mcp_status(); weak so nothing is kept alive
_bound: weakref.WeakKeyDictionary[Any, MCPToolset] = weakref.WeakKeyDictionary()


def _backstop(timeout_s: float) -> float:
    """The agent's timeout for an MCP tool whose MCP call timeout is ``timeout_s``."""
    return timeout_s + max(1.0, 0.1 * timeout_s)


def _tool_name(tool: BaseTool | Callable[..., Any]) -> str:
    return tool.name if isinstance(tool, BaseTool) else str(getattr(tool, "__name__", ""))


def with_mcp_tools(
    mcp_servers: Mapping[str, Any] | MCPToolset,
    tools: Sequence[BaseTool | Callable[..., Any]] | None,
    *,
    model: BaseChatModel,
    policy: ContextPolicy,
    settings: AgentSettings,
) -> tuple[MCPToolset, list[BaseTool | Callable[..., Any]], AgentSettings]:
    """Load the MCP servers' tools next to the application's tools.

    Servers that fail are skipped (see :func:`mcp_status`); this never raises for an
    unreachable server.

    Args:
        mcp_servers: Connection dicts by server name, or a configured ``MCPToolset``.
        tools: The application's own tools (their names are kept; colliding MCP tools
            get the server prefix).
        model: The chat model (its profile gives the window for the output cap).
        policy: The context policy (truncation limits).
        settings: The agent settings (timeouts, retries).

    Returns:
        ``(toolset, application tools + MCP tools, settings with the MCP tools' agent
        timeouts)``.

    Raises:
        KimiConfigurationError: Malformed ``mcp_servers``.
    """
    app_tools = list(tools or ())
    if isinstance(mcp_servers, MCPToolset):
        toolset = mcp_servers
    elif isinstance(mcp_servers, Mapping):
        window = resolve_context_window(policy, getattr(model, "model_profile", None)).window
        toolset = MCPToolset(
            mcp_servers,
            timeout_s=settings.tool_timeout_s,
            tool_timeouts=settings.tool_timeouts,
            retry=settings.retry,
            policy=policy,
            max_output_chars=per_result_cap_chars(policy, window),
        )
    else:
        raise KimiConfigurationError(
            "mcp_servers must be {server name: connection dict} or an MCPToolset, got "
            f"{type(mcp_servers).__name__}"
        )
    app_names = [_tool_name(t) for t in app_tools]
    mcp_tools = toolset.load(reserved_names=app_names)
    timeouts = dict(settings.tool_timeouts)
    down = sorted(n for n, s in toolset.status().items() if not s.ok)
    unknown = set(timeouts) - {*app_names, *(t.name for t in mcp_tools)}
    if down and unknown:  # probably tools of a server that is down: do not fail the build
        logger.warning(
            "tool_timeouts for %s ignored: no such tool now (MCP servers down: %s)",
            sorted(unknown),
            down,
        )
        timeouts = {k: v for k, v in timeouts.items() if k not in unknown}
    for tool in mcp_tools:
        server = str((tool.metadata or {}).get("mcp_server", ""))
        timeouts.setdefault(tool.name, _backstop(toolset.timeout_for(server, tool.name)))
    settings = dataclasses.replace(settings, tool_timeouts=timeouts)
    return toolset, [*app_tools, *mcp_tools], settings


def bind_toolset(owner: object, toolset: MCPToolset) -> None:
    """Remember that ``owner`` (an agent's tool runner, a memory) uses ``toolset``.

    Args:
        owner: The object :func:`mcp_status` will be given (or reach).
        toolset: Its MCP toolset.
    """
    _bound[owner] = toolset


def mcp_status(target: Any) -> dict[str, MCPServerStatus]:
    """Which MCP servers an agent, a memory or a toolset is connected to.

    Args:
        target: A graph from ``create_kimi_agent(..., mcp_servers=...)``, a
            ``RollingSnapshotMemory(..., mcp_servers=...)`` or an ``MCPToolset``.

    Returns:
        ``{server name: MCPServerStatus}`` (``state`` is ``connected``, ``failed`` or
        ``unauthorized``; ``reason`` says why). Empty when no MCP servers were configured.

    Example:
        >>> mcp_status(MCPToolset({"x": {"transport": "stdio", "command": "x"}}))["x"].state
        'failed'
    """
    if isinstance(target, MCPToolset):
        return target.status()
    try:
        toolset = _bound.get(target)
    except TypeError:  # not weak-referenceable: nothing was bound to it
        toolset = None
    if toolset is None and "call_model" in (getattr(target, "nodes", None) or {}):
        from langchain_kimi_context.memory import RollingSnapshotMemory

        try:
            toolset = _bound.get(RollingSnapshotMemory._runtime(target).runner)
        except KimiConfigurationError:  # a graph not built by create_kimi_agent
            toolset = None
    return toolset.status() if toolset is not None else {}


def stand_in_tools(owner: object, names: Sequence[str]) -> dict[str, BaseTool]:
    """Stand-ins for tools a resumed session used that no connected server offers now.

    Only while at least one MCP server of ``owner`` is not connected (else the names are
    genuinely unknown and the caller's error stands). Calling a stand-in returns an error
    result naming the servers that are down and why.

    Args:
        owner: The memory (or runner) the toolset is bound to.
        names: Tool names the session uses and this process does not have.

    Returns:
        ``{name: tool}`` (empty when every server is connected).
    """
    try:
        toolset = _bound.get(owner)
    except TypeError:
        return {}
    if toolset is None:
        return {}
    down = {n: s for n, s in toolset.status().items() if not s.ok}
    if not down:
        return {}
    return {name: toolset.stand_in(name, down) for name in names}
