"""Tool execution for the agent: timeouts, errors the model can read, repeat detection.

* Every tool call runs with a timeout (default 60 s, per-tool overrides). Parallel calls
  of one assistant message run concurrently. A timed-out sync call cannot be killed
  (Python threads cannot be), but the agent stops waiting for it and answers the model;
  a timed-out async call is cancelled.
* Sync and async tools both run under ``invoke`` and ``ainvoke``. :meth:`ToolRunner.arun`
  (the agent's ``ainvoke`` path) awaits every tool on the caller's event loop (sync
  tools in worker threads); :meth:`ToolRunner.run` (the ``invoke`` path) runs async-only
  tools (``@tool async def``, MCP adapters' tools) on one event loop the package keeps
  in a daemon thread. Timeouts, error capture and repeat counting are the same code for
  both paths.
* A tool that raises, times out, or is unknown becomes a ``ToolMessage`` with
  ``status="error"`` and a readable text; the turn goes on and the model decides.
* Identical repeated calls (same tool, same arguments) within one user turn are counted
  from the message log: at ``warn_at`` repeats the result carries a warning for the
  model; at ``stop_at`` the call is not executed and the turn stops.
"""

from __future__ import annotations

import asyncio
import json
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, Tool
from langchain_core.tools import tool as as_tool
from langgraph.config import get_store
from langgraph.prebuilt import ToolRuntime

from langchain_kimi_context.agent.background import background_loop
from langchain_kimi_context.context.messages import is_user_turn
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = ["ToolRunReport", "ToolRunner", "call_signature", "count_repeats", "is_async_only"]


def is_async_only(tool: BaseTool) -> bool:
    """Whether ``tool`` can only be awaited (``@tool async def``, MCP adapters' tools).

    Args:
        tool: A LangChain tool.

    Returns:
        ``True`` when it has a coroutine and no sync function.

    Example:
        >>> from langchain_core.tools import tool
        >>> @tool
        ... async def ping(host: str) -> str:
        ...     '''Ping a host.'''
        ...     return "pong"
        >>> is_async_only(ping)
        True
    """
    return getattr(tool, "coroutine", None) is not None and getattr(tool, "func", None) is None


def call_signature(call: Mapping[str, Any]) -> str:
    """Canonical ``name(args)`` string of a tool call, used to spot identical repeats.

    Args:
        call: A LangChain ``ToolCall`` dict.

    Returns:
        The signature (arguments as sorted JSON).

    Example:
        >>> call_signature({"name": "read", "args": {"b": 1, "a": 2}, "id": "x"})
        'read({"a": 2, "b": 1})'
    """
    args = json.dumps(call.get("args") or {}, sort_keys=True, ensure_ascii=False, default=str)
    return f"{call.get('name')}({args})"


def _turn_start(log: Sequence[AnyMessage]) -> int:
    for i in range(len(log) - 1, -1, -1):
        m = log[i]
        if is_user_turn(m):
            return i
    return 0


def count_repeats(log: Sequence[AnyMessage]) -> dict[str, int]:
    """Count identical tool calls in the current user turn of ``log``.

    Args:
        log: The message log (the current turn starts at the last user message).

    Returns:
        ``{signature: number of assistant calls with it}``.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> call = {"name": "ls", "args": {}, "id": "1"}
        >>> log = [HumanMessage("go"), AIMessage("", tool_calls=[call]),
        ...        AIMessage("", tool_calls=[{**call, "id": "2"}])]
        >>> count_repeats(log)
        {'ls({})': 2}
    """
    counts: dict[str, int] = {}
    for m in log[_turn_start(log) :]:
        if isinstance(m, AIMessage):
            for c in m.tool_calls:
                sig = call_signature(c)
                counts[sig] = counts.get(sig, 0) + 1
    return counts


def _runtime_params(tool: BaseTool) -> tuple[str, ...]:
    """Names of the parameters of ``tool`` typed ``ToolRuntime`` (filled in by the runner)."""
    func = getattr(tool, "func", None) or getattr(tool, "coroutine", None) or tool._run
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        return ()
    out = []
    for name, hint in hints.items():
        origin = typing.get_origin(hint) or hint
        if isinstance(origin, type) and issubclass(origin, ToolRuntime):
            out.append(name)
    return tuple(out)


def _current_store() -> Any:
    """The LangGraph store of the running graph (``None`` outside a graph or without one)."""
    try:
        return get_store()
    except RuntimeError:
        return None


@dataclass
class ToolRunReport:
    """What one tools step did.

    Attributes:
        calls: Tool calls executed (or answered with an error).
        errors: Calls that ended in an error result, by tool call id -> reason.
        timeouts: Ids of calls that timed out.
        repeat_warnings: Signatures that got a repeat warning.
        stopped: Set when a repeated call stopped the turn (the signature).
        durations_ms: Wall time per call id.

    Example:
        >>> ToolRunReport(calls=2).to_dict()["calls"]
        2
    """

    calls: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    timeouts: list[str] = field(default_factory=list)
    repeat_warnings: list[str] = field(default_factory=list)
    stopped: str | None = None
    durations_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a small JSON-serialisable dict (stored in the graph state).

        Returns:
            The non-empty fields.

        Example:
            >>> ToolRunReport().to_dict()
            {'calls': 0}
        """
        out: dict[str, Any] = {"calls": self.calls}
        if self.errors:
            out["errors"] = dict(self.errors)
        if self.timeouts:
            out["timeouts"] = list(self.timeouts)
        if self.repeat_warnings:
            out["repeat_warnings"] = list(self.repeat_warnings)
        if self.stopped:
            out["stopped"] = self.stopped
        if self.durations_ms:
            out["durations_ms"] = {k: round(v, 1) for k, v in self.durations_ms.items()}
        return out


class ToolRunner:
    """Runs the tool calls of an assistant message with timeouts and error capture.

    Args:
        tools: LangChain tools or plain functions (converted with ``@tool``); ``None`` = none.
        timeout_s: Default per-call timeout in seconds.
        timeouts: Per-tool overrides ``{tool name: seconds}``.
        warn_at: Identical calls in one turn from which results carry a warning.
        stop_at: Identical calls in one turn at which the turn stops.
        max_workers: Threads used for parallel calls.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> def add(a: int, b: int) -> int:
        ...     '''Add two numbers.'''
        ...     return a + b
        >>> runner = ToolRunner([add])
        >>> ai = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2},
        ...                                 "id": "c1"}])
        >>> results, report = runner.run(ai, [HumanMessage("sum"), ai])
        >>> results[0].content, report.calls
        ('3', 1)
    """

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]] | None = (),
        *,
        timeout_s: float = 60.0,
        timeouts: Mapping[str, float] | None = None,
        warn_at: int = 3,
        stop_at: int = 8,
        max_workers: int = 8,
    ) -> None:
        if tools is None:  # as in LangChain's create_agent: no tools
            tools = ()
        if isinstance(tools, BaseTool | str | bytes | Mapping) or callable(tools):
            # a lone tool is iterable (pydantic yields (field, value) pairs): say what to do
            raise KimiConfigurationError(
                f"tools must be a list of LangChain tools or functions, e.g. [read_file], "
                f"got a single {type(tools).__name__}"
            )
        converted: list[BaseTool] = []
        for t in tools:
            if isinstance(t, BaseTool):
                converted.append(t)
            elif callable(t):
                try:
                    converted.append(as_tool(t))
                except ValueError as exc:  # e.g. no docstring: LangChain needs a description
                    name = getattr(t, "__name__", type(t).__name__)
                    raise KimiConfigurationError(
                        f"tool {name!r} cannot be turned into a LangChain tool: {exc} "
                        "Add a docstring (the model reads it) or wrap it with @tool."
                    ) from exc
            else:
                raise KimiConfigurationError(
                    f"tools must be LangChain tools or functions, got {type(t).__name__} "
                    f"{t!r:.60}"
                    + (" (pass the function or tool itself, not its name)" * isinstance(t, str))
                )
        for t in converted:
            if isinstance(t, StructuredTool | Tool) and t.func is None and t.coroutine is None:
                raise KimiConfigurationError(
                    f"tool {t.name!r} has neither a function nor a coroutine to run; build it "
                    "with @tool on a def or an async def (or StructuredTool.from_function)."
                )
        self.tools: dict[str, BaseTool] = {t.name: t for t in converted}
        self._runtime_params = {t.name: _runtime_params(t) for t in converted}
        if len(self.tools) != len(converted):
            names = [t.name for t in converted]
            twice = sorted({n for n in names if names.count(n) > 1})
            raise KimiConfigurationError(
                f"tool names must be unique; {twice} appear more than once (rename one, "
                "e.g. @tool('read_file_v2'))"
            )
        if timeout_s <= 0 or any(v <= 0 for v in (timeouts or {}).values()):
            raise KimiConfigurationError("tool timeouts must be > 0 seconds")
        unknown = set(timeouts or {}) - set(self.tools)
        if unknown:
            raise KimiConfigurationError(
                f"tool_timeouts names unknown tools {sorted(unknown)}; known: {sorted(self.tools)}"
            )
        if not 1 <= warn_at <= stop_at:
            raise KimiConfigurationError(
                f"repeat limits need 1 <= warn_at <= stop_at (got {warn_at}, {stop_at})"
            )
        self.timeout_s = timeout_s
        self.timeouts = dict(timeouts or {})
        self.warn_at = warn_at
        self.stop_at = stop_at
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kimi-tool")

    def timeout_for(self, name: str) -> float:
        """The timeout of tool ``name``.

        Args:
            name: Tool name.

        Returns:
            Seconds.

        Example:
            >>> ToolRunner(timeout_s=5).timeout_for("anything")
            5
        """
        return self.timeouts.get(name, self.timeout_s)

    def run(
        self,
        message: AIMessage,
        log: Sequence[AnyMessage],
        *,
        state: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> tuple[list[ToolMessage], ToolRunReport]:
        """Execute the tool calls of ``message`` (the ``invoke`` path).

        Sync tools run in the runner's thread pool; async-only tools on the package's
        background event loop (a timed-out one is cancelled).

        A tool with a parameter typed ``ToolRuntime`` gets one (``state``, ``config``,
        the call id, the tools), as LangGraph's ``ToolNode`` gives it; a value the model
        put under that name is replaced.

        Args:
            message: The assistant message with ``tool_calls``.
            log: The message log, ``message`` included (for repeat counting).
            state: The graph state handed to ``ToolRuntime`` parameters.
            config: The run config handed to ``ToolRuntime`` parameters.

        Returns:
            One ``ToolMessage`` per call, in call order, and the report.

        Example:
            >>> from langchain_core.messages import AIMessage
            >>> ai = AIMessage("", tool_calls=[{"name": "nope", "args": {}, "id": "c"}])
            >>> msgs, rep = ToolRunner().run(ai, [ai])
            >>> msgs[0].status, "unknown tool" in msgs[0].content
            ('error', True)
        """
        batch = _Batch(self, message, log)
        pending: dict[str, Future[Any]] = {}
        for cid, call, tool in batch.todo:
            payload = self._payload(cid, call, log, state, config)
            if is_async_only(tool):
                coro = tool.ainvoke(payload)
                pending[cid] = asyncio.run_coroutine_threadsafe(coro, background_loop())
            else:
                pending[cid] = self._pool.submit(tool.invoke, payload)
        for cid, call, _ in batch.todo:
            remaining = max(self.timeout_for(call["name"]) - batch.elapsed(cid), 0.0)
            try:
                batch.finish(call, pending[cid].result(timeout=remaining))
            except FutureTimeout:
                pending[cid].cancel()
                batch.finish(call, TimeoutError())
            except Exception as exc:
                batch.finish(call, exc)
        return batch.ordered(), batch.report

    async def arun(
        self,
        message: AIMessage,
        log: Sequence[AnyMessage],
        *,
        state: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> tuple[list[ToolMessage], ToolRunReport]:
        """Async variant of :meth:`run` (the ``ainvoke`` path): tools run on this loop.

        Async tools are awaited here (cancelled on timeout); sync tools run in the
        runner's thread pool. Timeouts, errors, repeats and ``ToolRuntime`` parameters
        work as in :meth:`run`, which documents the arguments and the result.

        Example:
            >>> import asyncio
            >>> from langchain_core.messages import AIMessage
            >>> ai = AIMessage("", tool_calls=[{"name": "nope", "args": {}, "id": "c"}])
            >>> msgs, rep = asyncio.run(ToolRunner().arun(ai, [ai]))
            >>> rep.errors
            {'c': 'unknown_tool'}
        """
        batch = _Batch(self, message, log)
        loop = asyncio.get_running_loop()

        async def one(call: ToolCall, tool: BaseTool) -> Any:
            payload = self._payload(str(call.get("id") or ""), call, log, state, config)
            if getattr(tool, "coroutine", None) is not None or not hasattr(tool, "func"):
                awaitable: Any = tool.ainvoke(payload)
            else:  # a sync function: our pool, so a hung call never starves the loop's
                awaitable = loop.run_in_executor(self._pool, tool.invoke, payload)
            return await asyncio.wait_for(awaitable, self.timeout_for(call["name"]))

        outcomes = await asyncio.gather(
            *(one(call, tool) for _, call, tool in batch.todo), return_exceptions=True
        )
        for (_, call, _), outcome in zip(batch.todo, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancellation of the whole run
            batch.finish(call, outcome)
        return batch.ordered(), batch.report

    def _payload(
        self,
        cid: str,
        call: ToolCall,
        log: Sequence[AnyMessage],
        state: Mapping[str, Any] | None,
        config: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The tool input: the call, with a ``ToolRuntime`` in the parameters typed so."""
        payload: dict[str, Any] = dict(call, type="tool_call")
        if params := self._runtime_params.get(call["name"]):
            runtime = ToolRuntime(
                state=dict(state or {"messages": list(log)}),
                context=None,
                config=dict(config or {}),  # type: ignore[arg-type]
                stream_writer=lambda _chunk: None,
                tool_call_id=cid,
                store=_current_store(),
                tools=list(self.tools.values()),
            )
            payload["args"] = {**(call.get("args") or {}), **dict.fromkeys(params, runtime)}
        return payload

    @staticmethod
    def _error(call: ToolCall, text: str) -> ToolMessage:
        return ToolMessage(
            content=text, tool_call_id=str(call.get("id") or ""), name=call["name"], status="error"
        )

    def close(self) -> None:
        """Shut the worker pool down without waiting for abandoned calls.

        Example:
            >>> ToolRunner().close()
        """
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Batch:
    """One tools step: the calls to run, and turning each outcome into a ``ToolMessage``.

    The sync and async paths of :class:`ToolRunner` differ only in how they execute
    ``todo``; repeats, unknown tools, timeouts and error texts are decided here.
    """

    def __init__(self, runner: ToolRunner, message: AIMessage, log: Sequence[AnyMessage]):
        self.runner = runner
        self.message = message
        self.report = ToolRunReport(calls=len(message.tool_calls))
        self.repeats = count_repeats(log)
        self.results: dict[str, ToolMessage] = {}
        self.todo: list[tuple[str, ToolCall, BaseTool]] = []
        self._started: dict[str, float] = {}
        for call in message.tool_calls:
            cid = str(call.get("id") or "")
            name = call["name"]
            sig = call_signature(call)
            if self.repeats.get(sig, 0) >= runner.stop_at:
                self.report.stopped = sig
                self.results[cid] = runner._error(
                    call,
                    f"Not executed: {name} was called {self.repeats[sig]} times with identical "
                    f"arguments in this turn; the turn was stopped to avoid a loop.",
                )
                self.report.errors[cid] = "repeated"
                continue
            tool = runner.tools.get(name)
            if tool is None:
                self.results[cid] = runner._error(
                    call, f"Error: unknown tool {name!r}. Available tools: {sorted(runner.tools)}"
                )
                self.report.errors[cid] = "unknown_tool"
                continue
            self._started[cid] = time.perf_counter()
            self.todo.append((cid, call, tool))

    def elapsed(self, cid: str) -> float:
        return time.perf_counter() - self._started[cid]

    def finish(self, call: ToolCall, outcome: Any) -> None:
        """Record the outcome of one call: a result, a ``TimeoutError`` or an exception."""
        cid = str(call.get("id") or "")
        name = call["name"]
        report, runner = self.report, self.runner
        if isinstance(outcome, TimeoutError):
            report.timeouts.append(cid)
            report.errors[cid] = "timeout"
            msg = runner._error(
                call,
                f"Error: tool {name!r} timed out after {runner.timeout_for(name):g} s and was "
                "abandoned.",
            )
        elif isinstance(outcome, Exception):
            report.errors[cid] = type(outcome).__name__
            msg = runner._error(
                call, f"Error: tool {name!r} raised {type(outcome).__name__}: {outcome}"
            )
        elif isinstance(outcome, ToolMessage):
            msg = outcome
        else:
            msg = ToolMessage(content=str(outcome), tool_call_id=cid, name=name)
        report.durations_ms[cid] = self.elapsed(cid) * 1000
        sig = call_signature(call)
        if self.repeats.get(sig, 0) >= runner.warn_at:
            report.repeat_warnings.append(sig)
            msg = msg.model_copy(
                update={
                    "content": f"{msg.content}\n\n[warning: identical call repeated "
                    f"{self.repeats[sig]} times in this turn; change approach or stop. The "
                    f"turn is stopped at {runner.stop_at}.]"
                }
            )
        self.results[cid] = msg

    def ordered(self) -> list[ToolMessage]:
        return [self.results[str(c.get("id") or "")] for c in self.message.tool_calls]
