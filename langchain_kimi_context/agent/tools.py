"""Tool execution for the agent: timeouts, errors the model can read, repeat detection.

* Every tool call runs with a timeout (default 60 s, per-tool overrides). Parallel calls
  of one assistant message run concurrently. A timed-out call cannot be killed (Python
  threads cannot be), but the agent stops waiting for it and answers the model.
* A tool that raises, times out, or is unknown becomes a ``ToolMessage`` with
  ``status="error"`` and a readable text; the turn goes on and the model decides.
* Identical repeated calls (same tool, same arguments) within one user turn are counted
  from the message log: at ``warn_at`` repeats the result carries a warning for the
  model; at ``stop_at`` the call is not executed and the turn stops.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from langgraph.config import get_store
from langgraph.prebuilt import ToolRuntime

from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.errors import KimiConfigurationError

__all__ = ["ToolRunReport", "ToolRunner", "call_signature", "count_repeats"]


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
        if isinstance(m, HumanMessage) and not is_marked(m, "summary", "bootstrap"):
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
        """Execute the tool calls of ``message``.

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
        import time

        report = ToolRunReport(calls=len(message.tool_calls))
        repeats = count_repeats(log)
        pending: dict[str, Any] = {}
        results: dict[str, ToolMessage] = {}
        started: dict[str, float] = {}
        for call in message.tool_calls:
            cid = str(call.get("id") or "")
            name = call["name"]
            sig = call_signature(call)
            if repeats.get(sig, 0) >= self.stop_at:
                report.stopped = sig
                results[cid] = self._error(
                    call,
                    f"Not executed: {name} was called {repeats[sig]} times with identical "
                    f"arguments in this turn; the turn was stopped to avoid a loop.",
                )
                report.errors[cid] = "repeated"
                continue
            tool = self.tools.get(name)
            if tool is None:
                results[cid] = self._error(
                    call, f"Error: unknown tool {name!r}. Available tools: {sorted(self.tools)}"
                )
                report.errors[cid] = "unknown_tool"
                continue
            started[cid] = time.perf_counter()
            request = dict(call, type="tool_call")
            if params := self._runtime_params.get(name):
                runtime = ToolRuntime(
                    state=dict(state or {"messages": list(log)}),
                    context=None,
                    config=dict(config or {}),  # type: ignore[arg-type]
                    stream_writer=lambda _chunk: None,
                    tool_call_id=cid,
                    store=_current_store(),
                    tools=list(self.tools.values()),
                )
                request["args"] = {**(call.get("args") or {}), **dict.fromkeys(params, runtime)}
            pending[cid] = self._pool.submit(tool.invoke, request)
        for call in message.tool_calls:
            cid = str(call.get("id") or "")
            if cid not in pending:
                continue
            name = call["name"]
            timeout = self.timeout_for(name)
            remaining = max(timeout - (time.perf_counter() - started[cid]), 0.0)
            try:
                out = pending[cid].result(timeout=remaining)
                msg = (
                    out
                    if isinstance(out, ToolMessage)
                    else ToolMessage(content=str(out), tool_call_id=cid, name=name)
                )
            except FutureTimeout:
                pending[cid].cancel()
                report.timeouts.append(cid)
                report.errors[cid] = "timeout"
                msg = self._error(
                    call, f"Error: tool {name!r} timed out after {timeout:g} s and was abandoned."
                )
            except Exception as exc:
                report.errors[cid] = type(exc).__name__
                msg = self._error(call, f"Error: tool {name!r} raised {type(exc).__name__}: {exc}")
            report.durations_ms[cid] = (time.perf_counter() - started[cid]) * 1000
            sig = call_signature(call)
            if repeats.get(sig, 0) >= self.warn_at:
                report.repeat_warnings.append(sig)
                msg = msg.model_copy(
                    update={
                        "content": f"{msg.content}\n\n[warning: identical call repeated "
                        f"{repeats[sig]} times in this turn; change approach or stop. The turn "
                        f"is stopped at {self.stop_at}.]"
                    }
                )
            results[cid] = msg
        ordered = [results[str(c.get("id") or "")] for c in message.tool_calls]
        return ordered, report

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
