"""``MemoryCore``: the configuration and plumbing every part of the memory shares.

Contract:

* :class:`MemoryCore` holds a :class:`~langchain_kimi_context.RollingSnapshotMemory`'s
  configuration (model, checkpointer, policy, settings, tools, counter) and its
  :class:`~langchain_kimi_context.memory.registry.SessionRegistry` (``registry``);
  the public methods live in mixins built on it (``maintenance``, ``snapshots``,
  ``turns``) and in ``session``.
* A session is a thread of an agent graph built by
  :func:`~langchain_kimi_context.agent.create_kimi_agent` (one compiled graph per tool
  set, cached); reading a session goes through that graph's ``get_state``, writing
  through ``update_state`` as the ``compact`` node, so the delta channels stay the
  graph's own.
* :func:`exclusive` methods hold the session's thread (one writer per session across
  threads and processes); every write goes through one of them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from langchain_kimi_context.agent import stages as _stages
from langchain_kimi_context.agent.concurrency import Holding, thread_guard
from langchain_kimi_context.agent.graph import agent_runtime, create_kimi_agent, resolve_settings
from langchain_kimi_context.agent.inputs import clean_messages, thread_config
from langchain_kimi_context.agent.nodes import AgentRuntime
from langchain_kimi_context.agent.state import AgentSettings
from langchain_kimi_context.agent.storage import open_sqlite_checkpointer
from langchain_kimi_context.agent.tools import ToolRunner
from langchain_kimi_context.chat_models import KimiChatModel
from langchain_kimi_context.context.compaction import Compaction
from langchain_kimi_context.context.policy import ContextPolicy, as_context_policy
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.memory.errors import (
    AppendTooLargeError,
    PreserveTooSmallError,
    SessionClosedError,
    SessionExistsError,
    SessionLimitError,
    SessionNotFoundError,
)
from langchain_kimi_context.memory.registry import (
    REGISTRY_PREFIX,
    SessionEntry,
    SessionRegistry,
    new_id,
)
from langchain_kimi_context.tokens import TokenCounter, default_token_counter

__all__ = ["MemoryCore", "MessageLike", "exclusive", "to_message"]

MessageLike: TypeAlias = BaseMessage | str | tuple[str, str] | Mapping[str, Any]
"""What the append methods accept: a message, a user text, ``(role, text)`` or a dict."""

_F = TypeVar("_F", bound=Callable[..., Any])


def exclusive(method: _F) -> _F:
    """Run a method taking ``session_id`` first while holding that session's thread.

    One writer per session at a time, in this process and across processes on the same
    store (see :mod:`~langchain_kimi_context.agent.concurrency`); re-entrant, so
    ``chat`` holds the session while the graph and the memory's own writes run in it.

    Args:
        method: A method of a :class:`MemoryCore` whose first argument is the session id.

    Returns:
        The wrapped method.
    """

    @functools.wraps(method)
    def wrapper(self: MemoryCore, session_id: str, *args: Any, **kwargs: Any) -> Any:
        with self._hold(session_id):
            return method(self, session_id, *args, **kwargs)

    return cast(_F, wrapper)


def to_message(message: MessageLike) -> BaseMessage:
    """One message from any form the append methods accept (chunks become messages).

    Args:
        message: A message or chunk, a user text, a ``(role, text)`` tuple or an
            OpenAI-style dict.

    Returns:
        The LangChain message.
    """
    if isinstance(message, BaseMessageChunk):
        return message_chunk_to_message(message)
    if isinstance(message, BaseMessage):
        return message
    if isinstance(message, str):
        return HumanMessage(message)
    converted = convert_to_messages([message])  # type: ignore[list-item]
    return to_message(converted[0])


class MemoryCore:
    """Configuration, session graphs, registry and reads/writes of a memory.

    The base of :class:`~langchain_kimi_context.RollingSnapshotMemory` (its docstring
    documents the arguments); not used on its own.
    """

    def __init__(
        self,
        model: KimiChatModel | BaseChatModel | str,
        *,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        policy: ContextPolicy | None = None,
        tools: Sequence[BaseTool | Callable[..., Any]] = (),
        settings: AgentSettings | None = None,
        on_threshold: Literal["compact", "truncate"] = "compact",
        preserve_len: int = 8_000,
        max_sessions: int = 100,
        namespace: str = "default",
        db_path: str | os.PathLike[str] | None = None,
        token_counter: TokenCounter | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        recall: bool = False,
        mcp_servers: Mapping[str, Any] | None = None,
        compaction: Compaction | None = None,
    ) -> None:
        self.recall = recall
        self.compaction = compaction
        if on_threshold not in ("compact", "truncate"):
            raise KimiConfigurationError(
                f"on_threshold must be 'compact' or 'truncate' (got {on_threshold!r})"
            )
        if max_sessions < 1:
            raise KimiConfigurationError(f"max_sessions must be >= 1 (got {max_sessions})")
        self.policy = as_context_policy(policy, owner="RollingSnapshotMemory")
        if not isinstance(model, str | BaseChatModel):
            raise KimiConfigurationError(
                "RollingSnapshotMemory(model) must be a KimiChatModel, another LangChain chat "
                f"model or a Kimi model name such as 'kimi-k2.6', got {type(model).__name__}"
            )
        self._check_preserve(preserve_len)
        if isinstance(model, str):
            kwargs: dict[str, Any] = {"model": model, "max_retries": 0}
            if api_key is not None:
                kwargs["api_key"] = api_key
            if base_url is not None:
                kwargs["base_url"] = base_url
            model = KimiChatModel(**kwargs)
        self.model = model
        self.checkpointer: BaseCheckpointSaver[Any] = checkpointer or open_sqlite_checkpointer(
            db_path
        )
        self.settings = resolve_settings(settings, owner="RollingSnapshotMemory")
        self.on_threshold = on_threshold
        self.preserve_len = preserve_len
        self.max_sessions = max_sessions
        self.namespace = namespace
        self.token_counter = token_counter or default_token_counter()
        self.sleep = sleep
        self._mcp_configured = mcp_servers is not None
        if mcp_servers is not None:  # rebuilt from the configuration in every process
            from langchain_kimi_context.mcp.agent import bind_toolset, with_mcp_tools

            # settings unchanged: sessions without these tools must still build their graph
            mcp, tools, _ = with_mcp_tools(
                mcp_servers, tools, model=model, policy=self.policy, settings=self.settings
            )
            bind_toolset(self, mcp)
        self._tools: dict[str, BaseTool] = dict(ToolRunner(tools).tools) if tools else {}
        self._session_tools: dict[str, dict[str, BaseTool]] = {}
        self._graphs: dict[tuple[str, ...], CompiledStateGraph[Any, Any, Any, Any]] = {}
        self._guard = thread_guard(self.checkpointer)
        self.registry = SessionRegistry(
            self.checkpointer,
            namespace,
            guard=self._guard,
            busy_timeout_s=self.settings.busy_timeout_s,
        )

    def _hold(self, thread_id: str) -> contextlib.AbstractContextManager[Holding]:
        settings = self.settings
        return self._guard.hold(thread_id, settings.multitask_strategy, settings.busy_timeout_s)

    def _check_preserve(self, preserve_len: int) -> None:
        if preserve_len < self.policy.min_preserve_tokens:
            raise PreserveTooSmallError(
                preserve_len=preserve_len, minimum=self.policy.min_preserve_tokens
            )

    # ------------------------------------------------------------------ graphs
    def _graph_policy(self) -> ContextPolicy:
        if self.on_threshold == "truncate":
            # the memory applies the trigger itself (snapshot + truncate): the graph has
            # every compaction trigger off, the price budget included
            return self.policy.replace(
                compact_trigger_ratio=None,
                compact_reserve_tokens=None,
                compact_trigger_tokens=None,
                compact_budget="off",
            )
        return self.policy

    def _graph(self, tools: Mapping[str, BaseTool]) -> CompiledStateGraph[Any, Any, Any, Any]:
        key = tuple(sorted(f"{n}:{id(t)}" for n, t in tools.items()))
        graph = self._graphs.get(key)
        if graph is None:
            graph = create_kimi_agent(
                self.model,
                list(tools.values()),
                policy=self._graph_policy(),
                settings=self.settings,
                checkpointer=self.checkpointer,
                token_counter=self.token_counter,
                name="kimi_session",
                sleep=self.sleep,
                recall=self.recall,
                compaction=self.compaction,
            )
            self._graphs[key] = graph
        return graph

    @staticmethod
    def _runtime(graph: CompiledStateGraph[Any, Any, Any, Any]) -> AgentRuntime:
        return agent_runtime(graph)

    # ------------------------------------------------------------------ registry
    def _entry(self, session_id: str, *, live: bool = True) -> SessionEntry:
        entry = self.registry.load().sessions.get(session_id)
        if entry is None:
            raise SessionNotFoundError(session_id)
        if live and entry.closed:
            raise SessionClosedError(session_id)
        return entry

    def _claim_session_id(self, session_id: str | None) -> str:
        """A valid, unused id for a new session, within the cap on live sessions."""
        registry = self.registry.load()
        live = registry.live_sessions()
        if live >= self.max_sessions:
            raise SessionLimitError(limit=self.max_sessions, live=live)
        sid = session_id or new_id("sess")
        if sid.startswith(REGISTRY_PREFIX):
            raise KimiConfigurationError(f"session ids may not start with {REGISTRY_PREFIX!r}")
        if sid in registry.sessions or self.checkpointer.get_tuple(self._config(sid)):
            raise SessionExistsError(sid)
        return sid

    def _record_create(
        self,
        session_id: str,
        config: RunnableConfig,
        *,
        tools: Sequence[str],
        metadata: Mapping[str, Any],
        parent_snapshot: str | None = None,
    ) -> None:
        """Register a new session whose first checkpoint ``config`` names."""
        event: dict[str, Any] = {
            "op": "create",
            "session": session_id,
            "tools": list(tools),
            "metadata": dict(metadata),
        }
        if parent_snapshot is not None:
            event["parent_snapshot"] = parent_snapshot
        event["snapshot_id"] = new_id("snap")
        event["checkpoint_id"] = config["configurable"]["checkpoint_id"]
        self.registry.record(event)

    def _tools_for(self, entry: SessionEntry) -> dict[str, BaseTool]:
        own = self._session_tools.get(entry.session_id, {})
        out: dict[str, BaseTool] = {}
        missing = []
        for name in entry.tools:
            tool = own.get(name) or self._tools.get(name)
            if tool is None:
                missing.append(name)
            else:
                out[name] = tool
        if missing and self._mcp_configured:  # tools of MCP servers that are down now
            from langchain_kimi_context.mcp.agent import stand_in_tools

            out.update(stand_in_tools(self, missing))
            missing = [n for n in missing if n not in out]
        if missing:
            raise KimiConfigurationError(
                f"Session {entry.session_id!r} uses tools {missing} that this process does "
                f"not know: pass them to RollingSnapshotMemory(tools=[...]) or "
                f"attach_tools({entry.session_id!r}, [...])."
            )
        return out

    # ------------------------------------------------------------------ reads and writes
    def _session_graph(
        self, session_id: str, *, live: bool = True
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        return self._graph(self._tools_for(self._entry(session_id, live=live)))

    _config = staticmethod(thread_config)

    def _head(self, session_id: str) -> str:
        tup = self.checkpointer.get_tuple(self._config(session_id))
        if tup is None:
            raise SessionNotFoundError(session_id)
        return str(tup.config["configurable"]["checkpoint_id"])

    def _graph_state(
        self, graph: CompiledStateGraph[Any, Any, Any, Any], session_id: str
    ) -> dict[str, Any]:
        return dict(graph.get_state(self._config(session_id)).values or {})

    def _state(self, session_id: str, *, live: bool = True) -> dict[str, Any]:
        return self._graph_state(self._session_graph(session_id, live=live), session_id)

    @exclusive
    def _write(
        self, session_id: str, values: dict[str, Any], checkpoint_id: str | None = None
    ) -> str:
        graph = self._session_graph(session_id)
        config = graph.update_state(
            self._config(session_id, checkpoint_id), values, as_node="compact"
        )
        return str(config["configurable"]["checkpoint_id"])

    def _view(self, state: Mapping[str, Any]) -> list[BaseMessage]:
        return _stages.apply_records(list(state.get("messages") or []), state.get("compactions"))  # type: ignore[return-value]

    def _check_size(self, message: BaseMessage) -> None:
        tokens = self.token_counter.count_message(message)
        if tokens > self.policy.max_append_tokens:
            raise AppendTooLargeError(tokens=tokens, limit=self.policy.max_append_tokens)

    def _append(self, session_id: str, messages: Sequence[BaseMessage]) -> list[str]:
        msgs = [m if m.id else m.model_copy(update={"id": new_id("msg")}) for m in messages]
        msgs = clean_messages(msgs, where=f"session {session_id!r}")
        self._write(session_id, {"messages": msgs})
        return [str(m.id) for m in msgs]
