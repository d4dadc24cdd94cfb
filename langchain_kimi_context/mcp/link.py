"""One MCP server: a persistent session that reconnects, call timeouts, bounded retries.

A :class:`ServerLink` keeps one MCP ``ClientSession`` open on the package's MCP loop
(see ``_loop``), opened with ``langchain_mcp_adapters.sessions.create_session`` from a
langchain-mcp-adapters connection dict (stdio, streamable HTTP, SSE, websocket). Rules:

* Opening (process start or HTTP connect, plus the MCP handshake) is bounded by
  ``connect_timeout_s``.
* A call is bounded by its timeout as a whole: reconnects, retries and backoff waits all
  happen within it. A call that times out is not retried; the server is sent
  ``notifications/cancelled`` for it, so a server that honours it stops the tool.
* A transport error (see :func:`is_transport_error`: the process died, the connection was
  refused or dropped, the server forgot the session) drops the session; the next attempt
  opens a new one. Attempts and waits follow :class:`~langchain_kimi_context.agent.retry.
  RetrySettings` (its ``max_attempts`` and ``delay_for``), so a server that dies and comes
  back is used again, by the same call when it is back within the budget, else by a later
  call. A retried call may run twice on the server if the connection dropped after the
  server received it.
* Every outcome updates :meth:`ServerLink.status`: ``connected``, ``failed`` (with the
  reason) or ``unauthorized`` (HTTP 401/403). A change of state is logged (WARNING when
  the server is lost, INFO when it is back), and so is each retry with its wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TextIO

import anyio
import httpx
from langchain_mcp_adapters.sessions import Connection, create_session
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError
from mcp.types import (
    CONNECTION_CLOSED,
    CallToolResult,
    CancelledNotification,
    CancelledNotificationParams,
    ClientNotification,
    ListToolsResult,
)

from langchain_kimi_context.agent.retry import RetrySettings
from langchain_kimi_context.mcp._loop import mcp_loop, run_async

__all__ = [
    "MCPCallTimeoutError",
    "MCPServerStatus",
    "MCPServerUnavailableError",
    "ServerLink",
    "is_transport_error",
    "unauthorized_reason",
]

logger = logging.getLogger(__name__)

ServerState = Literal["connected", "failed", "unauthorized"]

# The MCP SDK answers a request whose HTTP session the server no longer knows with this
# code (a restarted server): the session is gone, a new one must be opened.
_SESSION_TERMINATED = 32600
_URL_QUERY = re.compile(r"(https?://[^\s'\"?]+)\?[^\s'\"]*")


@dataclass(frozen=True)
class MCPServerStatus:
    """What the application should know about one MCP server.

    Attributes:
        name: The server's name (the key in ``mcp_servers``).
        state: ``"connected"`` (last contact worked), ``"failed"`` (could not start or
            connect, or the connection dropped; the next call tries again) or
            ``"unauthorized"`` (the server refused the credentials: fix them).
        reason: Why it is not connected (``None`` when connected).
        transport: The connection's transport.
        tools: Names of its tools as the model sees them (empty when it never connected).
        since: Unix time of the last state change.
        calls: Tool calls sent.
        failed_calls: Tool calls that ended without a result (timeout, unreachable).
        reconnects: Sessions opened after the first one.
    """

    name: str
    state: ServerState
    reason: str | None = None
    transport: str = ""
    tools: tuple[str, ...] = ()
    since: float = 0.0
    calls: int = 0
    failed_calls: int = 0
    reconnects: int = 0

    @property
    def ok(self) -> bool:
        """Whether the server is connected."""
        return self.state == "connected"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict.

        Returns:
            The fields as a dict.
        """
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "transport": self.transport,
            "tools": list(self.tools),
            "since": self.since,
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "reconnects": self.reconnects,
        }


class MCPCallTimeoutError(TimeoutError):
    """An MCP tool call did not finish within its timeout.

    Attributes:
        server: Server name.
        tool: The tool's MCP name.
        timeout_s: The timeout in seconds.
    """

    def __init__(self, server: str, tool: str, timeout_s: float) -> None:
        self.server = server
        self.tool = tool
        self.timeout_s = timeout_s
        super().__init__(
            f"MCP tool {tool!r} on server {server!r} did not answer within {timeout_s:g} s"
        )


class MCPServerUnavailableError(ConnectionError):
    """An MCP server could not be reached for a call (after the allowed attempts).

    Attributes:
        server: Server name.
        attempts: Attempts made.
        reason: The last failure.
        in_flight: The connection dropped after the call was sent (so it was not
            retried: the tool may have run).
    """

    def __init__(self, server: str, attempts: int, reason: str, *, in_flight: bool = False) -> None:
        self.server = server
        self.attempts = attempts
        self.reason = reason
        self.in_flight = in_flight
        what = "lost the connection during the call" if in_flight else "is unreachable"
        super().__init__(f"MCP server {server!r} {what} after {attempts} attempt(s): {reason}")


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the members of exception groups and their causes, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        if e.__cause__ is not None:
            stack.append(e.__cause__)


def unauthorized_reason(exc: BaseException) -> str | None:
    """The refusal when ``exc`` is (or contains) an HTTP 401/403 answer.

    Args:
        exc: An error from opening a session or calling a tool.

    Returns:
        ``"HTTP 401 Unauthorized"``-style text, or ``None``.
    """
    for e in _leaves(exc):
        if isinstance(e, httpx.HTTPStatusError) and e.response.status_code in (401, 403):
            return f"HTTP {e.response.status_code} {e.response.reason_phrase}".strip()
    return None


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (so a new session may succeed).

    Transport errors: OS-level connection errors (refused, reset, broken pipe), httpx
    transport errors, closed or broken anyio streams, the MCP "Connection closed" and
    "Session terminated" errors, and HTTP 404 / 5xx answers. Not transport errors: our
    own call timeout, HTTP 401/403, and MCP errors about the request itself.

    Args:
        exc: Any exception (exception groups are searched).

    Returns:
        ``True`` for a transport error.
    """
    if isinstance(exc, MCPCallTimeoutError) or unauthorized_reason(exc):
        return False
    for e in _leaves(exc):
        if isinstance(e, McpError):
            if e.error.code in (CONNECTION_CLOSED, _SESSION_TERMINATED):
                return True
        elif isinstance(
            e,
            OSError
            | httpx.TransportError
            | anyio.ClosedResourceError
            | anyio.BrokenResourceError
            | anyio.EndOfStream,
        ):
            return True
        elif isinstance(e, httpx.HTTPStatusError):
            code = e.response.status_code
            if code == 404 or code >= 500:
                return True
    return False


def _never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` shows the request could not have reached the tool.

    Connection refused, a stream already closed before sending, or a server that no
    longer knows the session (it rejected the request without running it).
    """
    return any(
        isinstance(
            e,
            httpx.ConnectError
            | ConnectionRefusedError
            | FileNotFoundError
            | anyio.ClosedResourceError
            | anyio.BrokenResourceError,
        )
        or (isinstance(e, McpError) and e.error.code == _SESSION_TERMINATED)
        for e in _leaves(exc)
    )


async def _notify_cancelled(session: ClientSession, request_id: int, reason: str) -> None:
    """Send ``notifications/cancelled`` for an abandoned request (best effort, bounded)."""
    notice = ClientNotification(
        CancelledNotification(
            params=CancelledNotificationParams(requestId=request_id, reason=reason)
        )
    )
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.send_notification(notice), 2)


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, from the most specific member of ``exc``.

    Query strings of URLs are removed (they may carry tokens).

    Args:
        exc: Any exception (exception groups are unwrapped).

    Returns:
        ``"ClassName: message"`` of the first non-group member.
    """
    for e in _leaves(exc):
        if not isinstance(e, BaseExceptionGroup):
            text = _URL_QUERY.sub(r"\1?...", str(e).strip()) or "no details"
            return f"{type(e).__name__}: {text}"[:500]
    return type(exc).__name__  # pragma: no cover - a group always has members


@dataclass
class _Session:
    """An open session, the task that owns its context, and how to end it."""

    session: ClientSession
    owner: asyncio.Task[None]
    stop: asyncio.Event
    ended: asyncio.Future[BaseException | None]


@dataclass
class _Counters:
    calls: int = 0
    failed_calls: int = 0
    opened: int = 0
    tools: tuple[str, ...] = ()
    status: MCPServerStatus = field(default_factory=lambda: MCPServerStatus("", "failed"))


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


@contextlib.asynccontextmanager
async def _session_for(connection: Mapping[str, Any]) -> AsyncIterator[ClientSession]:
    """An MCP session for ``connection``; a stdio server's stderr always has a real file.

    The MCP SDK hands a stdio server the ``sys.stderr`` bound when the SDK was imported.
    Inside a notebook kernel that stream has no file descriptor and every stdio server
    fails with ``UnsupportedOperation: fileno``; there the server's stderr goes to the
    process's original stderr (``sys.__stderr__``) or, failing that, to the null device.
    Everywhere else the connection goes through langchain-mcp-adapters unchanged.
    """
    if connection.get("transport") != "stdio" or _has_fileno(sys.stderr):
        async with create_session(connection) as session:  # type: ignore[arg-type]
            yield session
        return
    params = StdioServerParameters(
        command=connection["command"],
        args=list(connection.get("args") or []),
        env=connection.get("env"),
        cwd=connection.get("cwd"),
        encoding=connection.get("encoding", "utf-8"),
        encoding_error_handler=connection.get("encoding_error_handler", "strict"),
    )
    with contextlib.ExitStack() as files:
        errlog: TextIO = (
            sys.__stderr__
            if sys.__stderr__ is not None and _has_fileno(sys.__stderr__)
            else files.enter_context(open(os.devnull, "w"))
        )
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, **(connection.get("session_kwargs") or {})) as session,
        ):
            yield session


class ServerLink:
    """A reconnecting session to one MCP server (all I/O on the MCP loop).

    Args:
        name: The server's name.
        connection: A langchain-mcp-adapters connection dict (copied; never logged).
        connect_timeout_s: Bound on starting/connecting plus the MCP handshake.
        retry: Attempts and backoff for transport errors.
    """

    def __init__(
        self,
        name: str,
        connection: Connection | Mapping[str, Any],
        *,
        connect_timeout_s: float = 30.0,
        retry: RetrySettings | None = None,
    ) -> None:
        self.name = name
        self._connection: dict[str, Any] = dict(connection)
        self.transport = str(self._connection.get("transport", ""))
        self.connect_timeout_s = connect_timeout_s
        self.retry = retry or RetrySettings()
        self._current: _Session | None = None
        self._open_lock: asyncio.Lock | None = None
        self._guard = threading.Lock()
        self._counters = _Counters(
            status=MCPServerStatus(
                name, "failed", "not connected yet", self.transport, since=time.time()
            )
        )

    def __repr__(self) -> str:
        return f"ServerLink({self.name!r}, transport={self.transport!r})"

    # ------------------------------------------------------------------ status
    def status(self) -> MCPServerStatus:
        """The server's current status.

        Returns:
            A snapshot (safe to read from any thread).
        """
        with self._guard:
            c = self._counters
            return replace(
                c.status,
                tools=c.tools,
                calls=c.calls,
                failed_calls=c.failed_calls,
                reconnects=max(c.opened - 1, 0),
            )

    def set_tools(self, names: tuple[str, ...]) -> None:
        """Record the names the model sees for this server's tools.

        Args:
            names: Tool names.
        """
        with self._guard:
            self._counters.tools = names

    def _set_state(self, state: ServerState, reason: str | None) -> None:
        with self._guard:
            old = self._counters.status
            if old.state == state and old.reason == reason:
                return
            self._counters.status = replace(old, state=state, reason=reason, since=time.time())
        if state == "connected":
            logger.info("MCP server %r connected (%s)", self.name, self.transport)
        else:
            logger.warning("MCP server %r %s: %s", self.name, state, reason)

    def _record_failure(self, exc: BaseException) -> None:
        refused = unauthorized_reason(exc)
        if refused:
            self._set_state("unauthorized", f"{refused}: check the credentials (headers/auth)")
        else:
            self._set_state("failed", describe_error(exc))

    # ------------------------------------------------------------------ sessions
    async def _own(
        self,
        ready: asyncio.Future[ClientSession],
        stop: asyncio.Event,
        ended: asyncio.Future[BaseException | None],
    ) -> None:
        """Hold the session's context open until ``stop``; record how it ended."""
        error: BaseException | None = None
        try:
            async with _session_for(self._connection) as session:
                await session.initialize()
                ready.set_result(session)
                await stop.wait()
        except asyncio.CancelledError:
            error = ConnectionError("session closed")
        except BaseException as exc:  # the process died, the connection dropped, ...
            error = exc
        finally:
            if not ready.done():
                ready.set_exception(error or ConnectionError("session closed before handshake"))
            if not ended.done():
                ended.set_result(error)

    async def _open(self, timeout: float) -> _Session:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[ClientSession] = loop.create_future()
        ended: asyncio.Future[BaseException | None] = loop.create_future()
        stop = asyncio.Event()
        owner = loop.create_task(self._own(ready, stop, ended), name=f"mcp-{self.name}")
        try:
            session = await asyncio.wait_for(asyncio.shield(ready), timeout)
        except BaseException as exc:
            stop.set()
            owner.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(owner, 10)
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: reported through ``exc`` below
            if isinstance(exc, TimeoutError):
                raise TimeoutError(
                    f"no MCP handshake within {timeout:g} s (the server did not start or "
                    "does not speak MCP)"
                ) from exc
            raise
        with self._guard:
            self._counters.opened += 1
        return _Session(session, owner, stop, ended)

    async def _session(self, timeout: float) -> _Session:
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            current = self._current
            if current is not None and not current.ended.done():
                return current
            self._current = None
            if current is not None:
                await self._end(current)
            self._current = await self._open(timeout)
            return self._current

    async def _end(self, current: _Session) -> None:
        current.stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(current.owner), 10)
        if not current.owner.done():  # pragma: no cover - a transport that ignores close
            current.owner.cancel()

    async def _drop(self, current: _Session) -> None:
        if self._current is current:
            self._current = None
        await self._end(current)

    # ------------------------------------------------------------------ calls
    async def _with_session(
        self, what: str, op: Any, timeout: float, *, retry_in_flight: bool = True
    ) -> Any:
        """Run ``op(session)`` with reconnects and retries, all within ``timeout``.

        ``retry_in_flight=False``: a connection that dropped after ``op`` was sent is not
        retried (the server may have acted on it).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MCPCallTimeoutError(self.name, what, timeout)
            current: _Session | None = None
            sent = False
            try:
                current = await self._session(min(remaining, self.connect_timeout_s))
                call = asyncio.ensure_future(op(current.session))
                sent = True
                remaining = deadline - loop.time()
                try:
                    done, _ = await asyncio.wait(
                        {call, current.ended},
                        timeout=max(remaining, 0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                except asyncio.CancelledError:  # the caller gave up: so does the call
                    call.cancel()
                    raise
                if call in done:
                    result = call.result()
                else:
                    call.cancel()
                    with contextlib.suppress(BaseException):
                        await call
                    if not done:
                        raise MCPCallTimeoutError(self.name, what, timeout)
                    raise current.ended.result() or ConnectionError("connection closed")
            except MCPCallTimeoutError:
                raise
            except Exception as exc:
                if isinstance(exc, TimeoutError) and current is None:
                    exc = ConnectionError(str(exc))  # the handshake did not finish in time
                refused = unauthorized_reason(exc)
                if not refused and not is_transport_error(exc):
                    if current is not None:  # the server answered: an error about the request
                        self._set_state("connected", None)
                    raise
                if current is not None and not refused:
                    await self._drop(current)
                self._record_failure(exc)
                reason = self.status().reason or describe_error(exc)
                if sent and not retry_in_flight and not _never_sent(exc):
                    raise MCPServerUnavailableError(
                        self.name, attempt, reason, in_flight=True
                    ) from exc
                if refused or attempt >= self.retry.max_attempts:
                    raise MCPServerUnavailableError(self.name, attempt, reason) from exc
                delay = self.retry.delay_for(attempt, exc)
                if loop.time() + delay >= deadline:
                    raise MCPServerUnavailableError(self.name, attempt, reason) from exc
                logger.info(
                    "MCP server %r: %s failed (%s); reconnecting in %.2f s (attempt %d of %d)",
                    self.name,
                    what,
                    reason,
                    delay,
                    attempt + 1,
                    self.retry.max_attempts,
                )
                await asyncio.sleep(delay)
            else:
                self._set_state("connected", None)
                return result

    async def connect(self) -> None:
        """Open the session now (one attempt, bounded by ``connect_timeout_s``).

        Raises:
            Exception: Why the server could not be reached (the status says it too).
        """

        async def go() -> None:
            try:
                await self._session(self.connect_timeout_s)
            except BaseException as exc:
                self._record_failure(exc)
                raise
            self._set_state("connected", None)

        await run_async(go())

    async def list_tools(self, cursor: str | None = None) -> ListToolsResult:
        """``ClientSession.list_tools`` through the link (used by the adapters' loader).

        Args:
            cursor: Pagination cursor.

        Returns:
            One page of tools.
        """

        async def op(session: ClientSession) -> ListToolsResult:
            return await session.list_tools(cursor=cursor)

        return await run_async(self._with_session("tools/list", op, self.connect_timeout_s))

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        progress_callback: Any = None,
        *,
        timeout_s: float = 60.0,
        retry_in_flight: bool = False,
        **_: Any,
    ) -> CallToolResult:
        """``ClientSession.call_tool`` with the link's timeout, retry and reconnect rules.

        Args:
            name: The tool's MCP name.
            arguments: Its arguments.
            progress_callback: Forwarded to the SDK.
            timeout_s: Bound on the whole call.
            retry_in_flight: Retry even when the connection dropped after the call was
                sent (for read-only or idempotent tools).
            **_: Other SDK keywords (ignored).

        Returns:
            The SDK's result.

        Raises:
            MCPCallTimeoutError: The call did not finish in time.
            MCPServerUnavailableError: The server could not be reached.
        """

        async def op(session: ClientSession) -> CallToolResult:
            # The SDK numbers requests in order, synchronously when the call starts, so
            # this is the id of the request below (no await in between).
            request_id = getattr(session, "_request_id", None)
            try:
                return await session.call_tool(name, arguments, progress_callback=progress_callback)
            except asyncio.CancelledError:  # timed out: tell the server to stop the tool
                if isinstance(request_id, int):
                    await _notify_cancelled(session, request_id, f"timed out after {timeout_s:g} s")
                raise

        with self._guard:
            self._counters.calls += 1
        try:
            return await run_async(
                self._with_session(name, op, timeout_s, retry_in_flight=retry_in_flight)
            )
        except (MCPCallTimeoutError, MCPServerUnavailableError):
            with self._guard:
                self._counters.failed_calls += 1
            raise

    async def aclose(self) -> None:
        """Close the session (a stdio server's process exits)."""

        async def go() -> None:
            current, self._current = self._current, None
            if current is not None:
                await self._end(current)

        await run_async(go())

    def close_soon(self) -> None:
        """Ask the MCP loop to close the session without waiting (for finalizers)."""
        current = self._current
        if current is not None:
            mcp_loop().call_soon_threadsafe(current.stop.set)
