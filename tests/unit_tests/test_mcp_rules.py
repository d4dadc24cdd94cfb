"""MCP rules that need no server: names, output cap, error classification, configuration."""

from __future__ import annotations

import anyio
import httpx
import pytest
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED, ErrorData

from langchain_kimi_context import ContextPolicy
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.mcp import MCPToolset, mcp_status
from langchain_kimi_context.mcp.link import (
    _never_sent,
    describe_error,
    is_transport_error,
    unauthorized_reason,
)
from langchain_kimi_context.mcp.toolset import _exposed_names


def _status_error(code: int) -> httpx.HTTPStatusError:
    req = httpx.Request("POST", "http://127.0.0.1:1/mcp?key=abc")
    return httpx.HTTPStatusError(f"{code}", request=req, response=httpx.Response(code))


def test_colliding_names_get_the_server_prefix_everywhere() -> None:
    names = _exposed_names(
        {"files": ["search", "read"], "web search!": ["search", "fetch"], "db": ["query"]},
        reserved=["fetch"],
    )
    assert names == {
        ("files", "search"): "files_search",
        ("files", "read"): "read",
        ("web search!", "search"): "web_search_search",
        ("web search!", "fetch"): "web_search_fetch",  # the app owns "fetch"
        ("db", "query"): "query",
    }


def test_prefixing_that_still_collides_is_a_configuration_error() -> None:
    with pytest.raises(KimiConfigurationError, match="rename the server"):
        _exposed_names({"a": ["b_c"], "z": ["b_c", "c"], "a_b": ["c"]}, reserved=[])


def test_transport_errors_and_the_rest() -> None:
    closed = McpError(ErrorData(code=CONNECTION_CLOSED, message="Connection closed"))
    bad_args = McpError(ErrorData(code=-32602, message="Invalid params"))
    assert is_transport_error(ExceptionGroup("tg", [httpx.ConnectError("refused")]))
    assert is_transport_error(closed)
    assert is_transport_error(anyio.ClosedResourceError())
    assert is_transport_error(BrokenPipeError())
    assert is_transport_error(_status_error(503))
    assert is_transport_error(_status_error(404))
    assert not is_transport_error(_status_error(401))  # unauthorized: retrying will not help
    assert not is_transport_error(bad_args)
    assert not is_transport_error(ValueError("bad"))
    assert unauthorized_reason(ExceptionGroup("tg", [_status_error(403)])) == "HTTP 403 Forbidden"


def test_only_errors_before_delivery_count_as_never_sent() -> None:
    terminated = McpError(ErrorData(code=32600, message="Session terminated"))
    closed = McpError(ErrorData(code=CONNECTION_CLOSED, message="Connection closed"))
    assert _never_sent(ExceptionGroup("tg", [httpx.ConnectError("refused")]))
    assert _never_sent(terminated)
    assert _never_sent(anyio.ClosedResourceError())
    assert not _never_sent(closed)  # the request was out: the tool may have run
    assert not _never_sent(httpx.ReadError("reset"))


def test_error_text_hides_url_queries() -> None:
    text = describe_error(ExceptionGroup("tg", [_status_error(502)]))
    assert "key=abc" not in text


def test_output_cap_keeps_head_and_marks_the_cut() -> None:
    ts = MCPToolset({"s": {"transport": "stdio", "command": "x"}}, max_output_chars=1_000)
    blocks = [{"type": "text", "text": "\n".join(f"row {i}" for i in range(5_000))}]
    content, artifact = ts._cap(blocks, {"structured_content": {"rows": list(range(5_000))}})
    assert isinstance(content, str)
    assert content.startswith("row 0\nrow 1")
    assert "characters removed" in content
    assert len(content) < 1_200
    assert artifact is None  # too big to keep
    small, kept = ts._cap([{"type": "text", "text": "ok"}], {"structured_content": {"a": 1}})
    assert (small, kept) == ("ok", {"structured_content": {"a": 1}})
    image = {"type": "image", "base64": "AAAA", "mime_type": "image/png"}
    mixed, _ = ts._cap([{"type": "text", "text": "x" * 5_000}, image], None)
    assert mixed[1] == image
    assert len(mixed[0]["text"]) < 1_200


def test_default_cap_is_the_truncation_policys_per_result_cap() -> None:
    ts = MCPToolset({}, policy=ContextPolicy(tool_result_hard_max_chars=7_000))
    assert ts.output_cap() == 7_000


def test_configuration_errors_say_what_to_fix() -> None:
    with pytest.raises(KimiConfigurationError, match="needs 'url'"):
        MCPToolset({"w": {"transport": "streamable_http"}})
    with pytest.raises(KimiConfigurationError, match="must be > 0"):
        MCPToolset({}, timeout_s=0)
    with pytest.raises(KimiConfigurationError, match="connection dict"):
        MCPToolset({"w": "http://127.0.0.1/mcp"})  # type: ignore[dict-item]


def test_secrets_stay_out_of_reprs_and_status() -> None:
    ts = MCPToolset(
        {
            "t": {
                "transport": "streamable_http",
                "url": "http://127.0.0.1:9/mcp",
                "headers": {"Authorization": "Bearer sk-very-secret"},
            }
        }
    )
    assert "sk-very-secret" not in repr(ts)
    assert "sk-very-secret" not in repr(ts.links["t"])
    assert "sk-very-secret" not in repr(mcp_status(ts))


def test_status_of_objects_without_mcp_is_empty() -> None:
    assert mcp_status(object()) == {}


def test_status_of_an_agent_without_mcp_servers_is_empty() -> None:
    from langchain_kimi_context import KimiChatModel, create_kimi_agent

    model = KimiChatModel(model="kimi-k2.6", api_key="sk-test")
    assert mcp_status(create_kimi_agent(model, checkpointer=False)) == {}


def test_tool_timeouts_of_a_down_server_do_not_fail_the_build(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from langchain_kimi_context import KimiChatModel, create_kimi_agent
    from langchain_kimi_context.agent import AgentSettings

    model = KimiChatModel(model="kimi-k2.6", api_key="sk-test")
    gone = {"files": {"transport": "stdio", "command": "/nonexistent/mcp-files"}}
    settings = AgentSettings(tool_timeouts={"read_file": 5})
    agent = create_kimi_agent(model, checkpointer=False, mcp_servers=gone, settings=settings)
    assert mcp_status(agent)["files"].state == "failed"
    assert "tool_timeouts for ['read_file'] ignored" in caplog.text
    with pytest.raises(KimiConfigurationError, match="unknown tools"):  # no server down: a typo
        create_kimi_agent(model, checkpointer=False, mcp_servers={}, settings=settings)


def test_mcp_servers_next_to_recall_tools() -> None:
    from langchain_kimi_context import KimiChatModel, create_kimi_agent
    from langchain_kimi_context.memory import RollingSnapshotMemory

    model = KimiChatModel(model="kimi-k2.6", api_key="sk-test")
    gone = {"files": {"transport": "stdio", "command": "/nonexistent/mcp-files"}}
    agent = create_kimi_agent(model, checkpointer=False, recall=True, mcp_servers=gone)
    assert mcp_status(agent)["files"].state == "failed"
    tools = RollingSnapshotMemory._runtime(agent).runner.tools
    assert {"search_history", "read_history"} <= set(tools)
