"""``RollingSnapshotMemory``: client-side Kimi sessions with snapshots, on the graph's checkpoints.

The seed describes server-side sessions (``create_session``, ``append_message``,
``truncate``, ``snapshot``, ``compress``) and a rolling-snapshot loop (``chat_round``).
The real Kimi API has no such sessions, so this module provides them client-side as a
THIN FACE over :func:`~langchain_kimi_context.agent.create_kimi_agent`:

* a session is a LangGraph thread of the agent graph (session id = thread id), on the
  same checkpointer (default: the graph's embedded SQLite file);
* ``chat`` is one ``graph.invoke``: preflight, the pipeline stages (sanitize, repair,
  limit, repair after a cut, truncate: ``PIPELINE_STAGES``), call (retries + overflow
  recovery), tools, maybe-compact: the graph's nodes, nothing else;
* a snapshot is a checkpoint id (taking one writes one tiny registry event, it never
  copies the history); ``rollback`` forks the thread from that checkpoint; ``share``
  copies the state at a checkpoint into a new thread;
* ``truncate`` and ``compress`` append a
  :class:`~langchain_kimi_context.CompactionRecord` next to the append-only log, so what
  the model sees shrinks while the record stays recoverable;
* the session registry (live sessions, snapshot names) is an append-only event list in
  a small thread of the same checkpointer.

Example:
    >>> import os, tempfile
    >>> from langchain_kimi_context import RollingSnapshotMemory
    >>> memory = RollingSnapshotMemory(
    ...     "kimi-k2.6", api_key="sk-test", db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
    >>> sid = memory.create_session(system="You are a careful refactoring assistant.")
    >>> snap = memory.snapshot(sid, name="start")
    >>> _ = memory.append_message(sid, "Decision: keep the public API stable.")
    >>> [m.type for m in memory.messages(sid)]
    ['system', 'human']
    >>> memory.rollback(sid, snap)
    >>> [m.type for m in memory.messages(sid)]
    ['system']
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict, TypeVar, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langchain_kimi_context import progress
from langchain_kimi_context.agent import _stages
from langchain_kimi_context.agent.concurrency import Holding, thread_guard
from langchain_kimi_context.agent.graph import _resolve_settings, create_kimi_agent
from langchain_kimi_context.agent.inputs import clean_messages
from langchain_kimi_context.agent.nodes import AgentRuntime
from langchain_kimi_context.agent.state import AgentSettings
from langchain_kimi_context.agent.storage import open_sqlite_checkpointer, records_channel
from langchain_kimi_context.agent.tools import ToolRunner
from langchain_kimi_context.chat_models import KimiChatModel
from langchain_kimi_context.context.compaction import (
    CompactionRecord,
    LLMCompaction,
    apply_compactions,
    compact,
    should_compact,
)
from langchain_kimi_context.context.compaction._common import is_real_user_turn, is_system
from langchain_kimi_context.context.compaction.savings import SavingsLedger, savings_ledger
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.policy import ContextPolicy, as_context_policy
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.history import KimiChatMessageHistory
from langchain_kimi_context.tokens import TokenCounter, default_token_counter

__all__ = [
    "AppendTooLargeError",
    "CompressResult",
    "KimiSessionError",
    "PreserveTooSmallError",
    "RollingSnapshotMemory",
    "SessionClosedError",
    "SessionExistsError",
    "SessionLimitError",
    "SessionNotFoundError",
    "SessionTurnError",
    "SessionUsage",
    "SnapshotInfo",
    "SnapshotSessionMismatchError",
    "SubtaskResult",
    "TruncateResult",
    "UnknownSnapshotError",
]

_REGISTRY_PREFIX = "__kimi_memory_registry__"

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- errors
class KimiSessionError(Exception):
    """Base class of the session API's errors.

    Example:
        >>> issubclass(SessionNotFoundError, KimiSessionError)
        True
    """


class SessionNotFoundError(KimiSessionError, LookupError):
    """No session with this id exists in the memory's namespace.

    Example:
        >>> str(SessionNotFoundError("s1")).startswith("No session 's1'")
        True
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"No session {session_id!r} in this memory: create it with "
            f"create_session(session_id={session_id!r}) or check the id (live sessions: "
            f"memory.sessions())."
        )


class SessionClosedError(KimiSessionError):
    """The session was closed with ``close_session``.

    Example:
        >>> "closed" in str(SessionClosedError("s1"))
        True
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"Session {session_id!r} was closed. Its snapshots are still usable: "
            f"share(snapshot_id) continues it as a new session."
        )


class SessionExistsError(KimiSessionError):
    """``create_session`` was given the id of an existing session.

    Example:
        >>> "already exists" in str(SessionExistsError("s1"))
        True
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"Session {session_id!r} already exists; pick another session_id or pass "
            f"session_id=None for a generated one."
        )


class SessionLimitError(KimiSessionError):
    """Creating the session would exceed the cap on live sessions.

    Attributes:
        limit: The cap (``max_sessions``).
        live: Live sessions now.

    Example:
        >>> SessionLimitError(limit=100, live=100).limit
        100
    """

    def __init__(self, *, limit: int, live: int) -> None:
        self.limit = limit
        self.live = live
        super().__init__(
            f"{live} live sessions already (max_sessions={limit}). Close finished ones with "
            f"memory.close_session(session_id) (add delete=True to drop their data), or "
            f"raise RollingSnapshotMemory(max_sessions=...)."
        )


class AppendTooLargeError(KimiSessionError, ValueError):
    """One appended message is larger than ``policy.max_append_tokens``.

    Attributes:
        tokens: Tokens of the message.
        limit: The per-append limit.

    Example:
        >>> err = AppendTooLargeError(tokens=20_000, limit=8_000)
        >>> err.parts, "Split it into" in str(err)
        (3, True)
    """

    def __init__(self, *, tokens: int, limit: int) -> None:
        self.tokens = tokens
        self.limit = limit
        self.parts = -(-tokens // limit)
        super().__init__(
            f"The message has about {tokens:,} tokens, over the per-append limit of "
            f"{limit:,} (ContextPolicy.max_append_tokens). Split it into at least "
            f"{self.parts} messages of at most {limit:,} tokens each (e.g. by file or "
            f"section) and append them one by one, or raise max_append_tokens."
        )


class PreserveTooSmallError(KimiSessionError, ValueError):
    """``truncate(preserve_len=...)`` asked to keep less than ``min_preserve_tokens``.

    Example:
        >>> "4,096" in str(PreserveTooSmallError(preserve_len=1000, minimum=4096))
        True
    """

    def __init__(self, *, preserve_len: int, minimum: int) -> None:
        self.preserve_len = preserve_len
        self.minimum = minimum
        super().__init__(
            f"preserve_len={preserve_len:,} is below the minimum of {minimum:,} tokens "
            f"(ContextPolicy.min_preserve_tokens): keeping less loses the working context. "
            f"Use preserve_len >= {minimum:,}, or compress() to summarise instead."
        )


class UnknownSnapshotError(KimiSessionError, LookupError):
    """The snapshot id is not known to this memory.

    Example:
        >>> "list_snapshots" in str(UnknownSnapshotError("snap-x"))
        True
    """

    def __init__(self, snapshot_id: str) -> None:
        self.snapshot_id = snapshot_id
        super().__init__(
            f"Unknown snapshot id {snapshot_id!r}: use an id returned by snapshot() or "
            f"listed by list_snapshots(session_id)."
        )


class SnapshotSessionMismatchError(KimiSessionError, ValueError):
    """The snapshot belongs to another session than the one named.

    Example:
        >>> err = SnapshotSessionMismatchError("snap-1", expected="a", actual="b")
        >>> err.actual, "share" in str(err)
        ('b', True)
    """

    def __init__(self, snapshot_id: str, *, expected: str, actual: str) -> None:
        self.snapshot_id = snapshot_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Snapshot {snapshot_id!r} belongs to session {actual!r}, not {expected!r}. "
            f"Roll back {actual!r} instead, or use share({snapshot_id!r}) to continue it "
            f"as a new session."
        )


class SessionTurnError(KimiSessionError):
    """A ``chat`` turn failed; the session was rolled back to its state before the turn.

    Attributes:
        session_id: The session.
        snapshot_id: The snapshot the session was rolled back to (before the turn).
        failed_checkpoint_id: The last checkpoint of the failed attempt (recoverable from
            the checkpoint history).
        cause: The underlying error (also ``__cause__``), or ``None`` for an interrupt.

    Example:
        >>> err = SessionTurnError("s", "snap-1", None, RuntimeError("boom"))
        >>> "rolled back" in str(err), err.cause.args
        (True, ('boom',))
    """

    def __init__(
        self,
        session_id: str,
        snapshot_id: str,
        failed_checkpoint_id: str | None,
        cause: BaseException | None,
        detail: str = "",
    ) -> None:
        self.session_id = session_id
        self.snapshot_id = snapshot_id
        self.failed_checkpoint_id = failed_checkpoint_id
        self.cause = cause
        why = detail or f"{type(cause).__name__}: {cause}"
        super().__init__(
            f"The turn failed ({why}). Session {session_id!r} was rolled back to snapshot "
            f"{snapshot_id!r} (its state before the turn); no completed model call is "
            f"repeated by the rollback. Fix the cause and call chat() again."
        )


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a session (a checkpoint of its thread).

    Attributes:
        snapshot_id: The id to pass to ``rollback``/``share``.
        session_id: The session it belongs to.
        checkpoint_id: The LangGraph checkpoint id.
        name: Optional name given to ``snapshot``.
        reason: ``"created"``, ``"manual"``, ``"threshold"``, ``"compaction"``,
            ``"truncate"``, ``"compress"`` or ``"before_turn"``.
        created_at: Unix time.

    Example:
        >>> SnapshotInfo("snap-1", "s", "ck", None, "manual", 0.0).reason
        'manual'
    """

    snapshot_id: str
    session_id: str
    checkpoint_id: str
    name: str | None
    reason: str
    created_at: float


@dataclass(frozen=True)
class TruncateResult:
    """What ``truncate`` did.

    Attributes:
        changed: Whether the head was dropped (``False``: everything already fits).
        snapshot_id: Snapshot of the state before the truncation (``None`` if unchanged).
        dropped_messages: Messages no longer sent to the model.
        kept_messages: Non-system messages kept.
        tokens_before: Tokens of the view before.
        tokens_after: Tokens of the view after.

    Example:
        >>> TruncateResult(False, None, 0, 3, 100, 100).changed
        False
    """

    changed: bool
    snapshot_id: str | None
    dropped_messages: int
    kept_messages: int
    tokens_before: int
    tokens_after: int


@dataclass(frozen=True)
class CompressResult:
    """What ``compress`` did.

    Attributes:
        changed: Whether a summary was stored.
        snapshot_id: Snapshot of the state before the compression.
        tokens_before: Tokens of the view before.
        tokens_after: Tokens of the view after.
        ratio: ``tokens_before / tokens_after``.
        record_id: The stored compaction record, if any.
        failures: Summariser failures (a failed summary is never stored).

    Example:
        >>> CompressResult(True, "snap-1", 400, 100, 4.0, "cmp-1", ()).ratio
        4.0
    """

    changed: bool
    snapshot_id: str | None
    tokens_before: int
    tokens_after: int
    ratio: float
    record_id: str | None
    failures: tuple[str, ...]


@dataclass(frozen=True)
class SessionUsage:
    """Tokens, cost, compactions and snapshots of a session.

    Attributes:
        calls: Model calls made in the session (summaries excluded).
        input_tokens: Prompt tokens billed over all calls.
        cached_tokens: Of those, served from the context cache.
        output_tokens: Completion tokens over all calls.
        total_tokens: ``input_tokens + output_tokens``.
        cost: Estimated cost from the model's prices.
        currency: Currency of ``cost``.
        context_tokens: Size of what the model would see next (calibrated estimate).
        context_by_role: ``context_tokens`` split by role (``system``, ``user``,
            ``assistant``, ``tool``; tools' schemas under ``tools``).
        log_messages: Messages in the full, append-only log.
        view_messages: Messages the model would see next.
        compactions: Compaction/truncation records stored.
        snapshots: Snapshots of the session.
        context_window: The window the session's next call is checked against (the
            policy's, else the model's, a window learned from the server included).
        savings: The savings ledger: per compaction, tokens before/after and the
            money it saved so far at the model's prices.

    Example:
        >>> SessionUsage(1, 10, 0, 5, 15, 0.0, "USD", 12, {"user": 12}, 2, 2, 0, 1).total_tokens
        15
    """

    calls: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float
    currency: str
    context_tokens: int
    context_by_role: dict[str, int]
    log_messages: int
    view_messages: int
    compactions: int
    snapshots: int
    context_window: int = 0
    savings: SavingsLedger | None = None


@dataclass(frozen=True)
class SubtaskResult:
    """Result of :meth:`RollingSnapshotMemory.run_subtask`.

    Attributes:
        session_id: The subtask's own session.
        result: The subtask's final answer (text).
        usage: Its usage.

    Example:
        >>> SubtaskResult("s", "done", None).result
        'done'
    """

    session_id: str
    result: str
    usage: SessionUsage | None


# ----------------------------------------------------------------------------- registry
class _RegistryState(TypedDict, total=False):
    events: Annotated[list[Any], records_channel(256)]


def _registry_noop(state: _RegistryState) -> dict[str, Any]:
    return {}


@dataclass
class _SessionEntry:
    session_id: str
    created_at: float
    tools: list[str]
    closed: bool = False
    parent_snapshot: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Registry:
    sessions: dict[str, _SessionEntry] = field(default_factory=dict)
    snapshots: dict[str, SnapshotInfo] = field(default_factory=dict)
    count: int = 0

    def apply(self, event: Mapping[str, Any]) -> None:
        self.count += 1
        op = event.get("op")
        if op == "create":
            sid = str(event["session"])
            self.sessions[sid] = _SessionEntry(
                session_id=sid,
                created_at=float(event.get("at", 0.0)),
                tools=list(event.get("tools") or []),
                parent_snapshot=event.get("parent_snapshot"),
                metadata=dict(event.get("metadata") or {}),
            )
            if event.get("snapshot_id"):
                self._snapshot(event, "created")
        elif op == "close":
            entry = self.sessions.get(str(event["session"]))
            if entry is not None:
                entry.closed = True
        elif op == "delete":
            sid = str(event["session"])
            self.sessions.pop(sid, None)
            for key in [k for k, v in self.snapshots.items() if v.session_id == sid]:
                del self.snapshots[key]
        elif op == "snapshot":
            self._snapshot(event, str(event.get("reason") or "manual"))

    def _snapshot(self, event: Mapping[str, Any], reason: str) -> None:
        sid = str(event["snapshot_id"])
        self.snapshots[sid] = SnapshotInfo(
            snapshot_id=sid,
            session_id=str(event["session"]),
            checkpoint_id=str(event["checkpoint_id"]),
            name=event.get("name"),
            reason=reason,
            created_at=float(event.get("at", 0.0)),
        )


_F = TypeVar("_F", bound=Callable[..., Any])


def _exclusive(method: _F) -> _F:
    """Run a method taking ``session_id`` first while holding that session's thread.

    One writer per session at a time, in this process and across processes on the same
    store (see :mod:`~langchain_kimi_context.agent.concurrency`); re-entrant, so
    ``chat`` holds the session while the graph and the memory's own writes run in it.
    """

    @functools.wraps(method)
    def wrapper(self: RollingSnapshotMemory, session_id: str, *args: Any, **kwargs: Any) -> Any:
        with self._hold(session_id):
            return method(self, session_id, *args, **kwargs)

    return cast(_F, wrapper)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _to_message(message: BaseMessage | str | tuple[str, str] | Mapping[str, Any]) -> BaseMessage:
    if isinstance(message, BaseMessageChunk):
        return message_chunk_to_message(message)
    if isinstance(message, BaseMessage):
        return message
    if isinstance(message, str):
        return HumanMessage(message)
    converted = convert_to_messages([message])  # type: ignore[list-item]
    return _to_message(converted[0])


_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


# ----------------------------------------------------------------------------- memory
class RollingSnapshotMemory:
    """Client-side Kimi sessions (seed API) on the agent graph's checkpoints.

    Args:
        model: A :class:`~langchain_kimi_context.KimiChatModel` or a Kimi model name.
        checkpointer: Any LangGraph ``BaseCheckpointSaver``; ``None`` = the graph's
            default embedded SQLite file (``db_path``, ``$KIMI_CONTEXT_DB`` or the
            default path).
        policy: Thresholds (trigger, ``max_append_tokens``, ``min_preserve_tokens``...).
        tools: Tools available to every session (sessions may add their own).
        settings: Reliability settings of the graph (retries, step limits).
        on_threshold: What ``chat`` does when the context passes the trigger:
            ``"compact"`` (the graph's maybe-compact: structural edits then a
            structured summary) or ``"truncate"`` (the seed's loop: snapshot, then
            :meth:`truncate` to ``preserve_len``). Both snapshot first.
        preserve_len: Tokens kept by the automatic truncation.
        max_sessions: Cap on live sessions in this namespace (seed: 100 per account).
        namespace: Registry namespace ("account"); memories with the same checkpointer
            and namespace share sessions.
        db_path: SQLite file for the default checkpointer.
        token_counter: Token counter (default: the process-wide one).
        api_key: API key when ``model`` is a name (else ``$MOONSHOT_API_KEY``).
        base_url: Base URL when ``model`` is a name.
        sleep: Sleep used for retry backoff (tests pass a fast one).
        recall: Sessions get the ``search_history`` / ``read_history`` tools over their
            full log (``create_kimi_agent(recall=True)``).
        mcp_servers: MCP servers whose tools every session gets, as for
            ``create_kimi_agent(mcp_servers=...)``; rebuilt from this configuration in
            every process, so resumed sessions keep them (``mcp_status(memory)``).

    Example:
        >>> import os, tempfile
        >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test", max_sessions=1,
        ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
        >>> sid = mem.create_session(system="Be terse.")
        >>> mem.create_session()
        Traceback (most recent call last):
        ...
        langchain_kimi_context.memory.SessionLimitError: 1 live sessions already ...
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
    ) -> None:
        self.recall = recall
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
        if preserve_len < self.policy.min_preserve_tokens:
            raise PreserveTooSmallError(
                preserve_len=preserve_len, minimum=self.policy.min_preserve_tokens
            )
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
        self.settings = _resolve_settings(settings, owner="RollingSnapshotMemory")
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
        registry = StateGraph(_RegistryState)
        registry.add_node("registry", _registry_noop)
        registry.add_edge(START, "registry")
        registry.add_edge("registry", END)
        self._registry_graph = registry.compile(checkpointer=self.checkpointer)
        self._registry_config: RunnableConfig = {
            "configurable": {"thread_id": f"{_REGISTRY_PREFIX}:{namespace}"}
        }
        self._registry = _Registry()
        self._registry_lock = threading.RLock()
        self._guard = thread_guard(self.checkpointer)

    def _hold(self, thread_id: str) -> contextlib.AbstractContextManager[Holding]:
        settings = self.settings
        return self._guard.hold(thread_id, settings.multitask_strategy, settings.busy_timeout_s)

    # ------------------------------------------------------------------ plumbing
    def _graph_policy(self) -> ContextPolicy:
        if self.on_threshold == "truncate":
            # the memory applies the trigger itself (snapshot + truncate)
            return self.policy.replace(
                compact_trigger_ratio=None,
                compact_reserve_tokens=None,
                compact_trigger_tokens=None,
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
            )
            self._graphs[key] = graph
        return graph

    @staticmethod
    def _runtime(graph: CompiledStateGraph[Any, Any, Any, Any]) -> AgentRuntime:
        node = graph.nodes["call_model"].bound
        runtime = getattr(getattr(node, "func", None), "__self__", None)
        if not isinstance(runtime, AgentRuntime):  # pragma: no cover - langgraph changed
            raise KimiConfigurationError("cannot reach the agent runtime of the graph")
        return runtime

    def _load_registry(self) -> _Registry:
        state = self._registry_graph.get_state(self._registry_config)
        events = list((state.values or {}).get("events") or [])
        if len(events) < self._registry.count:
            self._registry = _Registry()
        for event in events[self._registry.count :]:
            self._registry.apply(event)
        return self._registry

    def _record(self, event: dict[str, Any]) -> None:
        event.setdefault("at", time.time())
        registry_thread = str(self._registry_config["configurable"]["thread_id"])
        # one writer at a time (threads and processes): no sibling registry checkpoints;
        # always queued (a short write), whatever the sessions' multitask strategy
        queued = self._guard.hold(registry_thread, "enqueue", self.settings.busy_timeout_s)
        with self._registry_lock, queued:
            self._registry_graph.update_state(
                self._registry_config, {"events": [event]}, as_node="registry"
            )
            self._load_registry()

    def _entry(self, session_id: str, *, live: bool = True) -> _SessionEntry:
        entry = self._load_registry().sessions.get(session_id)
        if entry is None:
            raise SessionNotFoundError(session_id)
        if live and entry.closed:
            raise SessionClosedError(session_id)
        return entry

    def _tools_for(self, entry: _SessionEntry) -> dict[str, BaseTool]:
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

    def _session_graph(
        self, session_id: str, *, live: bool = True
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        return self._graph(self._tools_for(self._entry(session_id, live=live)))

    @staticmethod
    def _config(session_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
        conf: dict[str, Any] = {"thread_id": session_id, "checkpoint_ns": ""}
        if checkpoint_id:
            conf["checkpoint_id"] = checkpoint_id
        return {"configurable": conf}

    def _head(self, session_id: str) -> str:
        tup = self.checkpointer.get_tuple(self._config(session_id))
        if tup is None:
            raise SessionNotFoundError(session_id)
        return str(tup.config["configurable"]["checkpoint_id"])

    def _state(self, session_id: str, *, live: bool = True) -> dict[str, Any]:
        graph = self._session_graph(session_id, live=live)
        return dict(graph.get_state(self._config(session_id)).values or {})

    @_exclusive
    def _write(
        self, session_id: str, values: dict[str, Any], checkpoint_id: str | None = None
    ) -> str:
        graph = self._session_graph(session_id)
        config = graph.update_state(
            self._config(session_id, checkpoint_id), values, as_node="compact"
        )
        return str(config["configurable"]["checkpoint_id"])

    def _register_snapshot(
        self, session_id: str, checkpoint_id: str, *, name: str | None, reason: str
    ) -> str:
        snapshot_id = _new_id("snap")
        self._record(
            {
                "op": "snapshot",
                "session": session_id,
                "snapshot_id": snapshot_id,
                "checkpoint_id": checkpoint_id,
                "name": name,
                "reason": reason,
            }
        )
        progress.report(
            logger,
            "snapshot",
            "snapshot %s of session %s (%s) at checkpoint %s",
            snapshot_id,
            session_id,
            reason,
            checkpoint_id,
            thread_id=session_id,
            checkpoint_id=checkpoint_id,
            snapshot_id=snapshot_id,
            reason=reason,
        )
        return snapshot_id

    def _view(self, state: Mapping[str, Any]) -> list[BaseMessage]:
        return _stages.apply_records(list(state.get("messages") or []), state.get("compactions"))  # type: ignore[return-value]

    # ------------------------------------------------------------------ sessions
    def create_session(
        self,
        *,
        system: str | None = None,
        tools: Sequence[BaseTool | Callable[..., Any]] = (),
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a session (a thread of the agent graph) and return its id.

        Args:
            system: System instructions, stored as the first message of the log (kept
                by every truncation and compaction).
            tools: Tools of this session, on top of the memory's tools.
            session_id: The id (= LangGraph thread id); generated when ``None``.
            metadata: Small JSON-able data kept in the registry.

        Returns:
            The session id.

        Raises:
            SessionLimitError: ``max_sessions`` live sessions already exist.
            SessionExistsError: ``session_id`` is taken.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> mem.create_session(session_id="refactor-1")
            'refactor-1'
            >>> mem.sessions()
            ['refactor-1']
        """
        registry = self._load_registry()
        live = sum(1 for e in registry.sessions.values() if not e.closed)
        if live >= self.max_sessions:
            raise SessionLimitError(limit=self.max_sessions, live=live)
        sid = session_id or _new_id("sess")
        if sid.startswith(_REGISTRY_PREFIX):
            raise KimiConfigurationError(f"session ids may not start with {_REGISTRY_PREFIX!r}")
        if sid in registry.sessions or self.checkpointer.get_tuple(self._config(sid)):
            raise SessionExistsError(sid)
        own = dict(ToolRunner(tools).tools) if tools else {}
        self._session_tools[sid] = own
        names = sorted({*self._tools, *own})
        graph = self._graph({n: own.get(n) or self._tools[n] for n in names})
        initial: list[BaseMessage] = []
        if system:
            initial.append(SystemMessage(system, id=f"{sid}:system"))
        config = graph.update_state(
            self._config(sid),
            {"messages": initial, "context": {"session_id": sid}},
            as_node="compact",
        )
        self._record(
            {
                "op": "create",
                "session": sid,
                "tools": names,
                "metadata": dict(metadata or {}),
                "snapshot_id": _new_id("snap"),
                "checkpoint_id": config["configurable"]["checkpoint_id"],
            }
        )
        return sid

    def attach_tools(self, session_id: str, tools: Sequence[BaseTool | Callable[..., Any]]) -> None:
        """Give this process the tool objects of a session (e.g. after a restart).

        Args:
            session_id: The session.
            tools: Tools whose names the session uses.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> def ls() -> str:
            ...     '''List files.'''
            ...     return "a.py"
            >>> sid = mem.create_session(tools=[ls])
            >>> mem.attach_tools(sid, [ls])
        """
        self._entry(session_id, live=False)
        self._session_tools.setdefault(session_id, {}).update(ToolRunner(tools).tools)

    def sessions(self) -> list[str]:
        """Ids of the live (not closed) sessions, oldest first.

        Returns:
            Session ids.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> mem.sessions()
            []
        """
        entries = self._load_registry().sessions.values()
        return [e.session_id for e in sorted(entries, key=lambda e: e.created_at) if not e.closed]

    def close_session(self, session_id: str, *, delete: bool = False) -> None:
        """Close a session (frees a slot of ``max_sessions``); optionally delete its data.

        Args:
            session_id: The session.
            delete: Also delete its checkpoints (and snapshots) from the checkpointer.

        Raises:
            SessionNotFoundError: Unknown session.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> mem.close_session(sid); mem.sessions()
            []
        """
        self._entry(session_id, live=False)
        if delete:
            self.checkpointer.delete_thread(session_id)
            self._record({"op": "delete", "session": session_id})
            self._session_tools.pop(session_id, None)
        else:
            self._record({"op": "close", "session": session_id})

    # ------------------------------------------------------------------ appends
    def _check_size(self, message: BaseMessage) -> None:
        tokens = self.token_counter.count_message(message)
        if tokens > self.policy.max_append_tokens:
            raise AppendTooLargeError(tokens=tokens, limit=self.policy.max_append_tokens)

    def append_message(
        self,
        session_id: str,
        message: BaseMessage | str | tuple[str, str] | Mapping[str, Any],
    ) -> str:
        """Append one message to the session's log without calling the model.

        Use it to inject context (files, specs, ``("system", ...)`` rules). The message
        is committed as one checkpoint write (O(message), not O(history)).

        Args:
            session_id: The session.
            message: A LangChain message, a string (user message), a ``(role, text)``
                tuple or an OpenAI-style dict.

        Returns:
            The id of the stored message.

        Raises:
            AppendTooLargeError: Larger than ``policy.max_append_tokens`` (split it).
            SessionNotFoundError: Unknown session.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> mid = mem.append_message(sid, ("system", "Code style: black, 100 cols."))
            >>> mem.messages(sid)[-1].content
            'Code style: black, 100 cols.'
        """
        msg = _to_message(message)
        self._check_size(msg)
        return self._append(session_id, [msg])[0]

    def _append(self, session_id: str, messages: Sequence[BaseMessage]) -> list[str]:
        msgs = [m if m.id else m.model_copy(update={"id": _new_id("msg")}) for m in messages]
        msgs = clean_messages(msgs, where=f"session {session_id!r}")
        self._write(session_id, {"messages": msgs})
        return [str(m.id) for m in msgs]

    def append_messages(
        self,
        session_id: str,
        messages: Sequence[BaseMessage | str | tuple[str, str] | Mapping[str, Any]],
        *,
        enforce_limit: bool = True,
    ) -> list[str]:
        """Append several messages in ONE checkpoint write (no model call).

        Args:
            session_id: The session.
            messages: Messages (same forms as :meth:`append_message`).
            enforce_limit: Check each against ``policy.max_append_tokens`` (the chat
                history adapter turns this off for model replies it records).

        Returns:
            The ids of the stored messages.

        Raises:
            AppendTooLargeError: A message is over the limit (nothing is written).

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> len(mem.append_messages(sid, ["question", AIMessage("answer")]))
            2
        """
        msgs = [_to_message(m) for m in messages]
        if enforce_limit:
            for m in msgs:
                self._check_size(m)
        if not msgs:
            return []
        return self._append(session_id, msgs)

    @_exclusive
    def maintain(self, session_id: str) -> bool:
        """Run the end-of-turn check outside ``chat``: snapshot + compact/truncate if due.

        ``chat`` does this itself (inside the graph); faces that append messages without
        calling the graph (the chat-history adapter) call this after each exchange. The
        trigger is the graph's (``should_compact`` on server usage + estimate).

        Args:
            session_id: The session.

        Returns:
            Whether the context was compacted or truncated.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> mem.maintain(mem.create_session(system="sys"))
            False
        """
        graph = self._session_graph(session_id)
        runtime = self._runtime(graph)
        state = dict(graph.get_state(self._config(session_id)).values or {})
        if self.on_threshold == "truncate":
            count = len(state.get("compactions") or [])
            self._maybe_truncate(session_id, state)
            return len(self._state(session_id).get("compactions") or []) > count
        head = self._head(session_id)
        record, _ = _stages.run_compaction(
            list(state.get("messages") or []),
            state.get("compactions") or [],
            runtime.policy,
            model=runtime.summary_model,
            profile=runtime.profile,
            token_counter=self.token_counter,
            tools=runtime.tool_schemas,
            trigger=None,
            snapshot_id=head,
            prepare=lambda view: runtime.prepare(view, state),
        )
        if record is None:
            return False
        self._register_snapshot(session_id, head, name=None, reason="compaction")
        self._write(session_id, {"compactions": [record]})
        return True

    @staticmethod
    def _join_chunks(chunks: Sequence[BaseMessageChunk | str], role: str) -> BaseMessage:
        if not chunks:
            raise ValueError("append_stream got an empty stream: nothing to append")
        if all(isinstance(c, str) for c in chunks):
            text = "".join(str(c) for c in chunks)
            return _to_message((role, text))
        merged: Any = None
        for c in chunks:
            piece = AIMessageChunk(content=c) if isinstance(c, str) else c
            merged = piece if merged is None else merged + piece
        return message_chunk_to_message(merged)

    def append_stream(
        self,
        session_id: str,
        chunks: Iterable[BaseMessageChunk | str],
        *,
        role: Literal["user", "assistant", "system"] = "user",
    ) -> str:
        """Append a streamed message: chunks become ONE message, committed once complete.

        Nothing is written if the stream raises or is empty.

        Args:
            session_id: The session.
            chunks: Message chunks (e.g. from ``model.stream``) or text pieces.
            role: Role of the message when the chunks are plain strings.

        Returns:
            The id of the stored message.

        Raises:
            AppendTooLargeError: The complete message is over ``max_append_tokens``.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> _ = mem.append_stream(sid, iter(["part one, ", "part two"]))
            >>> mem.messages(sid)[-1].content
            'part one, part two'
        """
        self._entry(session_id)
        message = self._join_chunks(list(chunks), role)
        return self.append_message(session_id, message)

    async def aappend_stream(
        self,
        session_id: str,
        chunks: AsyncIterable[BaseMessageChunk | str],
        *,
        role: Literal["user", "assistant", "system"] = "user",
    ) -> str:
        """Async variant of :meth:`append_stream` (e.g. chunks of ``model.astream``).

        Args:
            session_id: The session.
            chunks: Async iterable of chunks.
            role: Role of the message when the chunks are plain strings.

        Returns:
            The id of the stored message.

        Example:
            >>> import asyncio, os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> async def gen():
            ...     yield "a"; yield "b"
            >>> _ = asyncio.run(mem.aappend_stream(sid, gen()))
            >>> mem.messages(sid)[-1].content
            'ab'
        """
        collected = [c async for c in chunks]
        return await asyncio.to_thread(self.append_stream, session_id, collected, role=role)

    # ------------------------------------------------------------------ chat
    @_exclusive
    def chat(self, session_id: str, user_input: str | BaseMessage) -> AIMessage:
        """One round of the seed's ``chat_round``, done by the agent graph.

        Appends the user message, then the graph runs preflight, the pipeline stages
        (sanitize, repair, limit, repair after a cut, truncate), the model call
        (retries, overflow recovery), tools, and
        maybe-compact; usage is recorded in the state. When the context passes the
        policy's trigger, a snapshot is registered and the context compacted (or
        truncated, ``on_threshold="truncate"``). On failure the session is rolled back
        to its state before the turn, with no model call repeated.

        Args:
            session_id: The session.
            user_input: The user's message.

        Returns:
            The final assistant message of the turn.

        Raises:
            SessionTurnError: The turn failed (cause attached); the session is as before.
            AppendTooLargeError: ``user_input`` is over ``max_append_tokens``.

        Example:
            >>> import os, tempfile
            >>> from langchain_kimi_context.testing import KimiEmulator
            >>> with KimiEmulator() as emu:  # a local Kimi emulator (real HTTP)
            ...     model = KimiChatModel(model="kimi-k2.6", api_key=emu.api_key,
            ...                           base_url=emu.base_url)
            ...     mem = RollingSnapshotMemory(model,
            ...         db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            ...     sid = mem.create_session(system="Be terse.")
            ...     print(mem.chat(sid, "@say Split utils.py in two.").content)
            ...     print(mem.usage(sid).calls)
            Split utils.py in two.
            1
        """
        graph, config, before, records_before = self._begin_turn(session_id, user_input)
        try:
            out = graph.invoke({"messages": [self._user_message(user_input)]}, config)
        except Exception as exc:
            self._fail_turn(session_id, before, exc)
        return self._end_turn(session_id, out, before, records_before)

    async def achat(self, session_id: str, user_input: str | BaseMessage) -> AIMessage:
        """Async variant of :meth:`chat` (``graph.ainvoke``).

        With a checkpointer that has no async API (LangGraph's plain ``SqliteSaver``)
        the turn runs in a worker thread instead, so the event loop is never blocked.

        Args:
            session_id: The session.
            user_input: The user's message.

        Returns:
            The final assistant message of the turn.

        Raises:
            SessionTurnError: The turn failed; the session is as before.

        Example:
            >>> import os, tempfile
            >>> from langchain_kimi_context.testing import KimiEmulator
            >>> with KimiEmulator() as emu:
            ...     model = KimiChatModel(model="kimi-k2.6", api_key=emu.api_key,
            ...                           base_url=emu.base_url)
            ...     mem = RollingSnapshotMemory(model,
            ...         db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            ...     sid = mem.create_session()
            ...     print(asyncio.run(mem.achat(sid, "@say async done")).content)
            async done
        """
        settings = self.settings
        # waiting for a busy session polls on the loop: no worker thread is blocked
        async with self._guard.ahold(
            session_id, settings.multitask_strategy, settings.busy_timeout_s
        ):
            if not self._async_checkpointer():
                return await asyncio.to_thread(self.chat, session_id, user_input)
            graph, config, before, records_before = await asyncio.to_thread(
                self._begin_turn, session_id, user_input
            )
            try:
                out = await graph.ainvoke({"messages": [self._user_message(user_input)]}, config)
            except Exception as exc:
                await asyncio.to_thread(self._fail_turn, session_id, before, exc)
            return await asyncio.to_thread(self._end_turn, session_id, out, before, records_before)

    def _async_checkpointer(self) -> bool:
        method = type(self.checkpointer).aget_tuple
        return method is not BaseCheckpointSaver.aget_tuple and not (
            isinstance(self.checkpointer, SqliteSaver) and method is SqliteSaver.aget_tuple
        )

    @staticmethod
    def _user_message(user_input: str | BaseMessage) -> BaseMessage:
        msg = _to_message(user_input)
        return msg if msg.id else msg.model_copy(update={"id": _new_id("msg")})

    def _begin_turn(
        self, session_id: str, user_input: str | BaseMessage
    ) -> tuple[CompiledStateGraph[Any, Any, Any, Any], RunnableConfig, str, int]:
        self._check_size(_to_message(user_input))
        graph = self._session_graph(session_id)
        before = self._head(session_id)
        state = graph.get_state(self._config(session_id)).values or {}
        return graph, self._config(session_id), before, len(state.get("compactions") or [])

    def _fail_turn(self, session_id: str, before: str, exc: BaseException | None) -> Any:
        failed = self._head(session_id)
        self._write(session_id, {"reports": {"rollback": {"to": before}}}, before)
        snap = self._register_snapshot(session_id, before, name=None, reason="before_turn")
        detail = "" if exc is not None else "the run paused after repeated model-call failures"
        raise SessionTurnError(session_id, snap, failed, exc, detail) from exc

    def _end_turn(
        self, session_id: str, out: Mapping[str, Any], before: str, records_before: int
    ) -> AIMessage:
        if out.get("__interrupt__"):
            self._fail_turn(session_id, before, None)
        state = self._state(session_id)
        records = list(state.get("compactions") or [])
        for record in records[records_before:]:
            checkpoint = record.get("snapshot_id") or before
            self._register_snapshot(session_id, str(checkpoint), name=None, reason="compaction")
        if self.on_threshold == "truncate":
            self._maybe_truncate(session_id, state)
        log = list(state.get("messages") or [])
        last = next((m for m in reversed(log) if isinstance(m, AIMessage)), None)
        return last if last is not None else AIMessage("")

    def _context_tokens(self, state: Mapping[str, Any], runtime: AgentRuntime) -> int:
        view = self._view(state)
        return runtime._tracker(state).current_size(view, runtime.tool_schemas or None)

    def _maybe_truncate(self, session_id: str, state: Mapping[str, Any]) -> None:
        runtime = self._runtime(self._session_graph(session_id))
        tokens = self._context_tokens(state, runtime)
        window = resolve_context_window(self.policy, runtime.profile).window
        if should_compact(tokens, window, self.policy):
            self.truncate(session_id, preserve_len=self.preserve_len, reason="threshold")

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, session_id: str, name: str | None = None) -> str:
        """Snapshot the session: remember its current checkpoint (nothing is copied).

        Args:
            session_id: The session.
            name: Optional label shown by :meth:`list_snapshots`.

        Returns:
            The snapshot id (for :meth:`rollback` and :meth:`share`).

        Raises:
            SessionNotFoundError: Unknown session.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> snap = mem.snapshot(sid, name="before-refactor")
            >>> [s.name for s in mem.list_snapshots(sid)]
            [None, 'before-refactor']
        """
        self._entry(session_id, live=False)
        return self._register_snapshot(
            session_id, self._head(session_id), name=name, reason="manual"
        )

    def list_snapshots(self, session_id: str) -> list[SnapshotInfo]:
        """The snapshots of a session, oldest first (manual and automatic ones).

        Args:
            session_id: The session.

        Returns:
            Snapshot infos.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> [s.reason for s in mem.list_snapshots(sid)]
            ['created']
        """
        self._entry(session_id, live=False)
        snaps = [s for s in self._registry.snapshots.values() if s.session_id == session_id]
        return sorted(snaps, key=lambda s: s.created_at)

    def _snapshot_info(self, snapshot_id: str) -> SnapshotInfo:
        info = self._load_registry().snapshots.get(snapshot_id)
        if info is None:
            raise UnknownSnapshotError(snapshot_id)
        return info

    @_exclusive
    def rollback(self, session_id: str, snapshot_id: str) -> None:
        """Return the session to a snapshot (a fork of its thread; nothing is deleted).

        Later checkpoints stay in the history and later snapshots stay valid, so a
        rollback can itself be undone.

        Args:
            session_id: The session.
            snapshot_id: A snapshot of THIS session.

        Raises:
            UnknownSnapshotError: The id is unknown.
            SnapshotSessionMismatchError: It belongs to another session.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session()
            >>> snap = mem.snapshot(sid)
            >>> _ = mem.append_message(sid, "scratch")
            >>> mem.rollback(sid, snap); mem.messages(sid)
            []
        """
        self._entry(session_id)
        info = self._snapshot_info(snapshot_id)
        if info.session_id != session_id:
            raise SnapshotSessionMismatchError(
                snapshot_id, expected=session_id, actual=info.session_id
            )
        self._write(session_id, {"reports": {"rollback": {"to": snapshot_id}}}, info.checkpoint_id)

    def share(self, snapshot_id: str, *, session_id: str | None = None) -> str:
        """Fork a snapshot into a new session that others can continue independently.

        Args:
            snapshot_id: Any known snapshot.
            session_id: Id of the new session (generated when ``None``).

        Returns:
            The new session id (same system, tools, log and compaction records).

        Raises:
            UnknownSnapshotError: Unknown snapshot.
            SessionLimitError: The cap on live sessions is reached.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session(system="sys")
            >>> _ = mem.append_message(sid, "context")
            >>> fork = mem.share(mem.snapshot(sid))
            >>> _ = mem.append_message(fork, "only in the fork")
            >>> len(mem.log(sid)), len(mem.log(fork))
            (2, 3)
        """
        info = self._snapshot_info(snapshot_id)
        source = self._entry(info.session_id, live=False)
        tools = self._tools_for(source)
        graph = self._graph(tools)
        values = graph.get_state(self._config(info.session_id, info.checkpoint_id)).values or {}
        registry = self._registry
        live = sum(1 for e in registry.sessions.values() if not e.closed)
        if live >= self.max_sessions:
            raise SessionLimitError(limit=self.max_sessions, live=live)
        sid = session_id or _new_id("sess")
        if sid in registry.sessions or self.checkpointer.get_tuple(self._config(sid)):
            raise SessionExistsError(sid)
        self._session_tools[sid] = dict(self._session_tools.get(info.session_id, {}))
        context = dict(values.get("context") or {})
        context["session_id"] = sid
        copied: dict[str, Any] = {
            "messages": list(values.get("messages") or []),
            "compactions": list(values.get("compactions") or []),
            "usage": dict(values.get("usage") or {}),
            "context": context,
        }
        config = graph.update_state(self._config(sid), copied, as_node="compact")
        self._record(
            {
                "op": "create",
                "session": sid,
                "tools": list(source.tools),
                "metadata": dict(source.metadata),
                "parent_snapshot": snapshot_id,
                "snapshot_id": _new_id("snap"),
                "checkpoint_id": config["configurable"]["checkpoint_id"],
            }
        )
        return sid

    # ------------------------------------------------------------------ shrinking
    @_exclusive
    def truncate(
        self, session_id: str, preserve_len: int = 8_000, *, reason: str = "truncate"
    ) -> TruncateResult:
        """Drop the head of what the model sees; the record stays in the log.

        Keeps every system message, the tool descriptions (bound to the model, never
        in the log) and the most recent turns that fit ``preserve_len`` tokens; when the
        last turn alone is larger, its user message is kept and the cut falls between
        its assistant steps, so tool calls and results stay paired. A short notice
        (marked ``"summary"``) tells the model that earlier context was removed.

        Args:
            session_id: The session.
            preserve_len: Token budget of the kept recent messages.
            reason: Reason stored with the automatic snapshot.

        Returns:
            What was dropped.

        Raises:
            PreserveTooSmallError: ``preserve_len < policy.min_preserve_tokens``.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session(system="sys")
            >>> for i in range(6):
            ...     _ = mem.append_message(sid, f"turn {i} " + "word " * 1500)
            ...     _ = mem.append_message(sid, AIMessage(f"answer {i}"))
            >>> result = mem.truncate(sid, preserve_len=4_096)
            >>> result.changed, [m.type for m in mem.messages(sid)]
            (True, ['system', 'system', 'human', 'ai', 'human', 'ai'])
            >>> mem.truncate(sid, preserve_len=100)
            Traceback (most recent call last):
            ...
            langchain_kimi_context.memory.PreserveTooSmallError: preserve_len=100 is below ...
        """
        if preserve_len < self.policy.min_preserve_tokens:
            raise PreserveTooSmallError(
                preserve_len=preserve_len, minimum=self.policy.min_preserve_tokens
            )
        state = self._state(session_id)
        log = list(state.get("messages") or [])
        records = _stages.load_records(state.get("compactions"))
        view = apply_compactions(log, records)
        counter = self.token_counter
        tokens_before = counter.count_messages(view)
        body = [i for i, m in enumerate(view) if not is_system(m)]
        log_ids = {m.id for m in log}
        starts = [i for i in body if is_real_user_turn(view[i]) and view[i].id in log_ids]
        cut: int | None = None
        pinned: tuple[str, ...] = ()
        for start in starts:  # oldest first: the earliest start that fits keeps the most
            if counter.count_messages(view[start:]) <= preserve_len:
                cut = start
                break
        if cut is None and starts:
            last = starts[-1]
            steps = [
                i
                for i in body
                if i > last and isinstance(view[i], AIMessage) and view[i].id in log_ids
            ]
            for j in steps:
                if counter.count_messages([view[last], *view[j:]]) <= preserve_len:
                    cut, pinned = j, (str(view[last].id),)
                    break
            if cut is None and steps:
                cut, pinned = steps[-1], (str(view[last].id),)
        first_body = body[0] if body else len(view)
        if cut is None or cut <= first_body:
            return TruncateResult(False, None, 0, len(body), tokens_before, tokens_before)
        dropped = [i for i in body if i < cut and str(view[i].id) not in pinned]
        before = self._head(session_id)
        snap = self._register_snapshot(session_id, before, name=None, reason=reason)
        notice = with_marker(
            SystemMessage(
                f"[Earlier conversation truncated: {len(dropped)} older messages were "
                f"removed from the context to save space. Continue from the messages "
                f"below.]",
                id=f"trunc-{snap}",
            ),
            "summary",
            truncated=len(dropped),
        )
        kept = [m for m in view if is_system(m)] + [notice]
        kept += [view[i] for i in body if i >= cut or str(view[i].id) in pinned]
        tokens_after = counter.count_messages(kept)
        record = CompactionRecord(
            record_id=CompactionRecord.make_id(truncate=str(view[cut].id), snapshot=snap),
            trigger=reason,
            strategy="truncate_head",
            tokens_before=tokens_before,
            tokens_after=tokens_after,
            ratio=round(tokens_before / max(tokens_after, 1), 3),
            snapshot_id=before,
            summary=notice,
            first_kept_id=str(view[cut].id),
            pinned_ids=pinned,
            covered_until_id=str(log[-1].id) if log else None,
        )
        self._write(session_id, {"compactions": [record.to_dict()]})
        return TruncateResult(
            True,
            snap,
            len(dropped),
            len(kept) - 1 - sum(1 for m in view if is_system(m)),
            tokens_before,
            tokens_after,
        )

    @_exclusive
    def compress(
        self, session_id: str, ratio: float = 4, format: Literal["outline"] = "outline"
    ) -> CompressResult:
        r"""Structured-summary compaction of all but the recent turns (the seed's compress).

        The summary (sections Current Task, Errors & Solutions, Code, System Context,
        Design Decisions, TODO) replaces the older turns in what the model sees; the
        log is untouched and a snapshot of the state before is registered. A failed
        summary is never stored.

        Args:
            session_id: The session.
            ratio: Target tokens-before / tokens-after of the summarised span (>= 1).
            format: ``"outline"`` (the only format: the structured outline).

        Returns:
            What happened.

        Raises:
            KimiConfigurationError: Bad ``ratio`` or ``format``.

        Example:
            >>> import os, tempfile
            >>> from langchain_kimi_context.testing import KimiEmulator
            >>> with KimiEmulator() as emu:
            ...     model = KimiChatModel(model="kimi-k2.6", api_key=emu.api_key,
            ...                           base_url=emu.base_url)
            ...     mem = RollingSnapshotMemory(model,
            ...         db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            ...     sid = mem.create_session(system="You refactor code.")
            ...     for i in range(5):
            ...         _ = mem.chat(sid, f"Refactor m{i}.py. TODO: tests.\n@reply 300")
            ...     result = mem.compress(sid, ratio=4)
            ...     view = mem.messages(sid)
            >>> result.changed, result.tokens_after < result.tokens_before
            (True, True)
            >>> "## Current Task" in view[1].content
            True
        """
        if format != "outline":
            raise KimiConfigurationError(
                f"compress supports format='outline' (a structured summary), got {format!r}"
            )
        if ratio < 1:
            raise KimiConfigurationError(f"compress ratio must be >= 1 (got {ratio})")
        graph = self._session_graph(session_id)
        runtime = self._runtime(graph)
        state = self._state(session_id)
        log = list(state.get("messages") or [])
        records = _stages.load_records(state.get("compactions"))
        view = apply_compactions(log, records)
        before_tokens = self.token_counter.count_messages(view, runtime.tool_schemas or None)
        before = self._head(session_id)
        _, report = compact(
            log,
            self.policy.replace(compact_target_ratio=float(ratio)),
            strategy=LLMCompaction(runtime.summary_model),
            records=records,
            profile=runtime.profile,
            token_counter=self.token_counter,
            tools=runtime.tool_schemas or None,
            trigger="manual",
            snapshot_id=before,
            target_tokens=max(1, int(before_tokens / ratio)),
        )
        if report.record is None:
            return CompressResult(
                False,
                None,
                report.tokens_before,
                report.tokens_before,
                1.0,
                None,
                tuple(report.failures),
            )
        snap = self._register_snapshot(session_id, before, name=None, reason="compress")
        self._write(session_id, {"compactions": [report.record.to_dict()]})
        return CompressResult(
            True,
            snap,
            report.tokens_before,
            report.tokens_after,
            round(report.tokens_before / max(report.tokens_after, 1), 3),
            report.record.record_id,
            tuple(report.failures),
        )

    # ------------------------------------------------------------------ reading
    def messages(self, session_id: str) -> list[BaseMessage]:
        """The messages the model would see next (records applied, pipeline run).

        Args:
            session_id: The session.

        Returns:
            LangChain messages, exactly as the graph's model node would send them.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> sid = mem.create_session(system="sys")
            >>> [m.content for m in mem.messages(sid)]
            ['sys']
        """
        graph = self._session_graph(session_id, live=False)
        state = dict(graph.get_state(self._config(session_id)).values or {})
        prepared: list[BaseMessage] = self._runtime(graph).prepare(self._view(state), state)
        return prepared

    def log(self, session_id: str) -> list[BaseMessage]:
        """The full, append-only log of the session (nothing truncated or summarised).

        Args:
            session_id: The session.

        Returns:
            Every stored message.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> mem.log(mem.create_session(system="sys"))[0].content
            'sys'
        """
        return list(self._state(session_id, live=False).get("messages") or [])

    def usage(self, session_id: str) -> SessionUsage:
        """Tokens (billed and in context, by role), cost, compactions and snapshots.

        Args:
            session_id: The session.

        Returns:
            The usage.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> u = mem.usage(mem.create_session(system="Be terse."))
            >>> u.calls, u.context_by_role["system"] > 0, u.snapshots
            (0, True, 1)
        """
        graph = self._session_graph(session_id, live=False)
        runtime = self._runtime(graph)
        state = dict(graph.get_state(self._config(session_id)).values or {})
        usage = dict(state.get("usage") or {})
        view: list[BaseMessage] = runtime.prepare(self._view(state), state)
        by_role: dict[str, int] = {"system": 0, "user": 0, "assistant": 0, "tool": 0}
        for m in view:
            role = _ROLE.get(m.type, m.type)
            by_role[role] = by_role.get(role, 0) + self.token_counter.count_message(m)
        if runtime.tool_schemas:
            by_role["tools"] = self.token_counter.count_tools(runtime.tool_schemas)
        prompt = int(usage.get("input_tokens", 0))
        cached = int(usage.get("cache_read_tokens", 0))
        output = int(usage.get("output_tokens", 0))
        pricing = runtime.profile.pricing
        if "cost" in usage:
            cost = float(usage["cost"])
        else:
            cost = pricing.cost(prompt_tokens=prompt, cached_tokens=cached, output_tokens=output)
        return SessionUsage(
            calls=int(usage.get("calls", 0)),
            input_tokens=prompt,
            cached_tokens=cached,
            output_tokens=output,
            total_tokens=prompt + output,
            cost=round(cost, 8),
            currency=pricing.currency,
            context_tokens=runtime._tracker(state).current_size(view, runtime.tool_schemas or None),
            context_by_role=by_role,
            log_messages=len(state.get("messages") or []),
            view_messages=len(view),
            compactions=len(state.get("compactions") or []),
            snapshots=len(self.list_snapshots(session_id)),
            context_window=resolve_context_window(self.policy, runtime.profile).window,
            savings=savings_ledger(
                state.get("messages") or [], state.get("compactions") or [], pricing
            ),
        )

    def history(self, session_id: str, *, system: str | None = None) -> KimiChatMessageHistory:
        """A ``BaseChatMessageHistory`` over a session (created on first use).

        Pass ``memory.history`` as ``get_session_history`` of
        ``RunnableWithMessageHistory``.

        Args:
            session_id: The session.
            system: System instructions if the session is created here.

        Returns:
            The adapter.

        Example:
            >>> import os, tempfile
            >>> mem = RollingSnapshotMemory("kimi-k2.6", api_key="sk-test",
            ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            >>> type(mem.history("s1")).__name__
            'KimiChatMessageHistory'
        """
        return KimiChatMessageHistory(self, session_id, system=system)

    # ------------------------------------------------------------------ multi-session
    def run_subtask(
        self,
        task: str,
        *,
        system: str | None = None,
        tools: Sequence[BaseTool | Callable[..., Any]] = (),
        into: str | None = None,
        keep_session: bool = False,
    ) -> SubtaskResult:
        """Run an independent subtask in its own session and bring back only its result.

        The subtask's exploration (tool calls, long outputs) never enters the parent
        session; only the final answer does (when ``into`` is given), as one user
        message.

        Args:
            task: The subtask's instruction.
            system: Its system instructions.
            tools: Its tools.
            into: A session to append the result to.
            keep_session: Keep the subtask session open (default: closed afterwards,
                which frees its slot; its data stays for ``share``/inspection).

        Returns:
            The result, the subtask's session id and its usage.

        Example:
            >>> import os, tempfile
            >>> from langchain_kimi_context.testing import KimiEmulator
            >>> with KimiEmulator() as emu:
            ...     model = KimiChatModel(model="kimi-k2.6", api_key=emu.api_key,
            ...                           base_url=emu.base_url)
            ...     mem = RollingSnapshotMemory(model,
            ...         db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
            ...     main = mem.create_session(system="Main task.")
            ...     sub = mem.run_subtask("@say a.py defines parse()", into=main)
            ...     print(sub.result, "|", mem.log(main)[-1].content.splitlines()[-1])
            a.py defines parse() | a.py defines parse()
        """
        sub = self.create_session(system=system, tools=tools, metadata={"subtask": True})
        try:
            reply = self.chat(sub, task)
            usage = self.usage(sub)
        finally:
            if not keep_session:
                self.close_session(sub)
        result = reply.text if hasattr(reply, "text") else str(reply.content)
        if into is not None:
            message = HumanMessage(f"[Result of subtask: {task[:200]}]\n{result}")
            self._append(into, [message])
        return SubtaskResult(session_id=sub, result=result, usage=usage)
