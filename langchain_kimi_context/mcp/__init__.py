"""MCP tools for Kimi agents: timeouts, isolation and recovery (``pip install '...[mcp]'``).

Built on langchain-mcp-adapters (connection dicts, tool conversion) and the ``mcp`` SDK.

* :class:`MCPToolset` loads the tools of several servers; one that fails to start or
  connect is reported and skipped (``toolset.py``).
* :class:`ServerLink` keeps one reconnecting session per server with call timeouts and
  bounded retries (``link.py``).
* :func:`with_mcp_tools` / :func:`mcp_status` connect them to ``create_kimi_agent`` and
  ``RollingSnapshotMemory`` (``agent.py``).

Example:
    >>> from langchain_kimi_context.mcp import MCPToolset, mcp_status
    >>> servers = {"files": {"transport": "stdio", "command": "python",
    ...                      "args": ["files_server.py"]}}
    >>> agent = create_kimi_agent("kimi-k2.6", mcp_servers=servers)  # doctest: +SKIP
    >>> mcp_status(agent)["files"].state  # doctest: +SKIP
    'connected'
"""

from __future__ import annotations

try:
    import langchain_mcp_adapters  # noqa: F401
    import mcp  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from langchain_kimi_context.errors import KimiConfigurationError

    raise KimiConfigurationError(
        f"MCP support needs the 'mcp' extra: pip install 'langchain-kimi-context[mcp]' ({exc})"
    ) from exc

from langchain_kimi_context.mcp.agent import bind_toolset, mcp_status, with_mcp_tools
from langchain_kimi_context.mcp.link import (
    MCPCallTimeoutError,
    MCPServerStatus,
    MCPServerUnavailableError,
    ServerLink,
)
from langchain_kimi_context.mcp.toolset import DEFAULT_MCP_TIMEOUT_S, MCPToolset

__all__ = [
    "DEFAULT_MCP_TIMEOUT_S",
    "MCPCallTimeoutError",
    "MCPServerStatus",
    "MCPServerUnavailableError",
    "MCPToolset",
    "ServerLink",
    "bind_toolset",
    "mcp_status",
    "with_mcp_tools",
]
