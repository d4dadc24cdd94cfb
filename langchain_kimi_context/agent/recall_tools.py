"""Recall tools: the model searches and reads back its own session's full log.

:func:`recall_tools` returns LangChain tools that read the graph state through
LangGraph's ``ToolRuntime`` (so they work in :func:`create_kimi_agent`, in
``langchain.agents.create_agent`` with :class:`KimiContextMiddleware`, and in any graph
whose ``ToolNode`` injects the runtime):

* ``search_history(query, limit=5)``: keyword (BM25) search over the thread's
  ``messages`` (the append-only log: everything compaction summarised and truncation
  cut is still there), each hit a ref plus a short excerpt. Hits out of view come
  first; messages the model sees verbatim only fill the places left, marked
  ``[in view]``;
* ``read_history(ref, start=0, length=8000)``: the original text of a ref, paged;
* ``compact_context()`` (opt-in): asks for a compaction before the next model call,
  refused while the view is at or below the compaction target (it could not shrink).

Rules:

* Recall never leaves the session: a tool sees only ``runtime.state["messages"]`` of
  the thread it runs in. The index of a thread is cached by thread id and always
  brought up to date with (or rebuilt from) that very log under a lock before it
  answers, so a ref of another thread is "not found".
* The index logic lives in :mod:`langchain_kimi_context.context.recall` (pure); this
  module only wires it to the graph state, caches one index per thread, and formats
  results for the model.
* Optional semantic search: with a LangGraph ``BaseStore`` created with an ``index``
  (embeddings), passages are also put in the store under ``(*namespace, thread id)``
  and the store's ``search(query=...)`` hits are merged with the keyword hits
  (reciprocal rank fusion). No embedding service is needed otherwise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import ToolRuntime
from langgraph.store.base import BaseStore, PutOp

from langchain_kimi_context.agent import stages as agent_stages
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.recall import (
    DEFAULT_READ_CHARS,
    RecallHit,
    RecallIndex,
    RecallRefError,
)
from langchain_kimi_context.context.truncation import per_result_cap_chars
from langchain_kimi_context.tokens import TokenCounter

__all__ = [
    "COMPACT_REQUEST",
    "RecallCache",
    "compact_on_request",
    "recall_tools",
    "with_recall",
]

COMPACT_REQUEST = "kimi_compact_request"
"""``artifact`` of a ``compact_context`` result that asks for a compaction."""

_STORE_NAMESPACE = ("kimi_recall",)


class RecallCache:
    """One :class:`RecallIndex` per thread (LRU), each used under its own lock.

    Args:
        size: Threads kept (older ones are rebuilt from their log when used again).
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def index(self, key: str, log: Sequence[BaseMessage]) -> _Held:
        """Return a context manager holding the index of ``key`` brought up to ``log``.

        Args:
            key: The thread key.
            log: That thread's full log.

        Returns:
            A context manager yielding the index (locked while held).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return _Held(entry, log)


@dataclass
class _Entry:
    index: RecallIndex = field(default_factory=RecallIndex)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stored: tuple[int, int] = (-1, 0)  # (index generation, passages put in the store)


class _Held:
    def __init__(self, entry: _Entry, log: Sequence[BaseMessage]) -> None:
        self.entry = entry
        self.log = log

    def __enter__(self) -> RecallIndex:
        self.entry.lock.acquire()
        try:
            self.entry.index.update(self.log)
        except BaseException:
            self.entry.lock.release()
            raise
        return self.entry.index

    def __exit__(self, *exc: object) -> None:
        self.entry.lock.release()


_DEFAULT_CACHE = RecallCache()


def _thread_key(runtime: ToolRuntime[Any, Any]) -> str:
    conf = (runtime.config or {}).get("configurable") or {}
    thread = conf.get("thread_id")
    if thread is None:
        # no thread: key by the log's first message (the index follows the log it is
        # given, so two logs sharing a key only cost a rebuild, never a wrong answer)
        log = _log_of(runtime)
        return f"unthreaded:{log[0].id if log else ''}"
    return f"{thread}|{conf.get('checkpoint_ns', '')}"


def _log_of(runtime: ToolRuntime[Any, Any]) -> list[BaseMessage]:
    state = runtime.state
    messages = state.get("messages") if isinstance(state, Mapping) else None
    return list(messages or [])


def _visible_ids(runtime: ToolRuntime[Any, Any], log: list[BaseMessage]) -> set[str]:
    """Ids of the log messages the model sees verbatim (not summarised, not replaced)."""
    state = runtime.state if isinstance(runtime.state, Mapping) else {}
    records = state.get("compactions") or state.get("kimi_compactions")
    view = agent_stages.apply_records(log, records)  # type: ignore[arg-type]
    return {str(m.id) for m in view if m.id and get_marker(m) is None}


def _render_hits(query: str, hits: Sequence[RecallHit], visible: set[str]) -> str:
    if not hits:
        return (
            f"No match for {query!r} in this conversation's history. Try other keywords "
            "(an identifier, a file name, words of the error)."
        )
    lines = [f"{len(hits)} match(es) for {query!r}; read_history(ref) returns the original text:"]
    lines += [
        f"{i}. {'[in view] ' if hit.message_id in visible else ''}{hit.render()}"
        for i, hit in enumerate(hits, 1)
    ]
    return "\n".join(lines)


def _fuse(
    keyword: Sequence[RecallHit], semantic: Sequence[str], index: RecallIndex, limit: int
) -> list[RecallHit]:
    """Reciprocal rank fusion of keyword hits and semantic refs (k = 60)."""
    scores: dict[str, float] = {}
    by_ref: dict[str, RecallHit] = {}
    for rank, hit in enumerate(keyword):
        scores[hit.ref] = scores.get(hit.ref, 0.0) + 1 / (60 + rank)
        by_ref[hit.ref] = hit
    for rank, ref in enumerate(semantic):
        scores[ref] = scores.get(ref, 0.0) + 1 / (60 + rank)
        if ref not in by_ref and (found := index.hit_for(ref)) is not None:
            by_ref[ref] = found
    ranked = sorted((r for r in scores if r in by_ref), key=lambda r: -scores[r])
    seen: set[str] = set()
    out: list[RecallHit] = []
    for ref in ranked:
        hit = by_ref[ref]
        if hit.message_id not in seen:
            seen.add(hit.message_id)
            out.append(hit)
    return out[:limit]


def _semantic(store: BaseStore, entry: _Entry, key: str, query: str, limit: int) -> list[str]:
    namespace = (*_STORE_NAMESPACE, key)
    passages = entry.index.passages()
    generation, done = entry.stored
    if generation != entry.index.generation:  # rebuilt from another log: start over
        if stale := _all_items(store, namespace):
            store.batch([PutOp(namespace, item.key, None) for item in stale])
        done = 0
    for ref, text in passages[done:]:
        store.put(namespace, ref, {"text": text}, index=["text"])
    entry.stored = (entry.index.generation, len(passages))
    return [item.key for item in store.search(namespace, query=query, limit=limit)]


def _all_items(store: BaseStore, namespace: tuple[str, ...]) -> list[Any]:
    items, offset = [], 0
    while batch := store.search(namespace, limit=1_000, offset=offset):
        items += batch
        offset += len(batch)
    return items


def recall_tools(
    *,
    max_read_chars: int = 20_000,
    compact_tool: bool = False,
    policy: ContextPolicy | None = None,
    model: Any = None,
    token_counter: TokenCounter | None = None,
    store: BaseStore | None = None,
    cache: RecallCache | None = None,
) -> list[BaseTool]:
    """Build the recall tools (``search_history``, ``read_history``, opt-in ``compact_context``).

    Args:
        max_read_chars: Largest page ``read_history`` returns (a page stays under the
            tool-result truncation cap, so reading never gets truncated again).
        compact_tool: Add ``compact_context`` (its gate uses ``policy``, ``model`` and
            ``token_counter``; works in :func:`create_kimi_agent`, whose preflight
            honours the request).
        policy: Thresholds of the compaction gate.
        model: The agent's chat model: its profile, read at each call, gives the
            window of the gate (``None``: the policy's window).
        token_counter: Counter of the gate.
        store: Optional LangGraph store with an embedding ``index`` for semantic hits.
        cache: Per-thread index cache (default: one shared by the process).

    Returns:
        The tools.

    Example:
        >>> [t.name for t in recall_tools()]
        ['search_history', 'read_history']
    """
    cache = cache or _DEFAULT_CACHE
    page_cap = max(int(max_read_chars), 1)

    def search_history(query: str, runtime: ToolRuntime, limit: int = 5) -> str:
        """Search this conversation's full history, including what was summarised or cut.

        Use it when a detail you need (an exact error, a value, a file's content, an
        earlier tool result) is no longer in view. Then read a hit with read_history.

        Args:
            query: Keywords: identifiers, file names, error words, numbers.
            runtime: Injected by the agent (never filled by the model).
            limit: Most hits to return (1-20).
        """
        limit = min(max(int(limit), 1), 20)
        key = _thread_key(runtime)
        log = _log_of(runtime)
        visible = _visible_ids(runtime, log)
        held = cache.index(key, log)
        with held as index:
            # what left the view first: a message in view (e.g. the request that named
            # the keywords) only fills the places left
            hits = index.search(query, limit, exclude_ids=visible)
            if len(hits) < limit:
                hits += [h for h in index.search(query, limit) if h.message_id in visible]
                hits = hits[:limit]
            if store is not None:
                refs = _semantic(store, held.entry, key, query, limit)
                hits = _fuse(hits, refs, index, limit)
        return _render_hits(query, hits, visible)

    def read_history(
        ref: str, runtime: ToolRuntime, start: int = 0, length: int = DEFAULT_READ_CHARS
    ) -> str:
        """Read the original text of a history ref, exactly as it was (paged).

        Args:
            ref: A ref from search_history or from a truncation marker.
            runtime: Injected by the agent (never filled by the model).
            start: Offset into what the ref names (to read the next page).
            length: Characters to read.
        """
        with cache.index(_thread_key(runtime), _log_of(runtime)) as index:
            try:
                page = index.read(ref, max(int(start), 0), min(max(int(length), 1), page_cap))
            except RecallRefError as exc:
                return f"Not found: {exc}"
        return page.render()

    tools: list[BaseTool] = [
        StructuredTool.from_function(search_history),
        StructuredTool.from_function(read_history),
    ]
    if compact_tool:
        tools.append(_compact_tool(policy or ContextPolicy(), model, token_counter))
    return tools


def _compact_tool(
    policy: ContextPolicy, model: Any, token_counter: TokenCounter | None
) -> BaseTool:
    from langchain_kimi_context.tokens import default_token_counter

    counter = token_counter or default_token_counter()

    def compact_context(runtime: ToolRuntime) -> ToolMessage:
        """Compact the conversation now (summarise older turns) to free context.

        Only useful when the context is large; earlier details stay reachable with
        search_history and read_history.

        Args:
            runtime: Injected by the agent (never filled by the model).
        """
        state = runtime.state if isinstance(runtime.state, Mapping) else {}
        view = agent_stages.apply_records(_log_of(runtime), state.get("compactions"))  # type: ignore[arg-type]
        tokens = counter.count_messages(view)
        profile = agent_stages.model_profile(model) if model is not None else None
        floor = int(resolve_context_window(policy, profile).window * policy.compact_target_share)
        call_id = runtime.tool_call_id or ""
        if tokens <= floor:
            return ToolMessage(
                f"Not compacted: the context is already small ({tokens:,} tokens; "
                f"compaction only runs above {floor:,}). Continue with the task.",
                tool_call_id=call_id,
                name="compact_context",
            )
        return ToolMessage(
            f"Compaction requested ({tokens:,} tokens in context): it runs before your "
            "next step. Older turns become a summary; search_history still finds them.",
            tool_call_id=call_id,
            name="compact_context",
            artifact={COMPACT_REQUEST: True},
        )

    return StructuredTool.from_function(compact_context)


def _compact_requested(log: Sequence[BaseMessage]) -> bool:
    """A ``compact_context`` result asking for a compaction follows the last assistant step."""
    for message in reversed(log):
        if isinstance(message, AIMessage):
            return False
        artifact = message.artifact if isinstance(message, ToolMessage) else None
        if isinstance(artifact, Mapping) and artifact.get(COMPACT_REQUEST):
            return True
    return False


def compact_on_request(
    preflight: Callable[[Mapping[str, Any], RunnableConfig], dict[str, Any]],
) -> Callable[[Mapping[str, Any], RunnableConfig], dict[str, Any]]:
    """Wrap the agent's preflight node so a ``compact_context`` request compacts first.

    Args:
        preflight: The agent's ``preflight`` node (``AgentRuntime.preflight``).

    Returns:
        The node: the same update, plus ``turn["compact_reason"] = "requested"`` when
        the last tool step asked for it (once per log length, as the trigger).
    """

    def node(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        update = preflight(state, config)
        log = list(state.get("messages") or [])
        turn = update.get("turn") or {}
        if (
            not turn.get("compact_reason")
            and turn.get("compacted_at") != len(log)
            and _compact_requested(log)
        ):
            turn["compact_reason"] = "requested"
            update["turn"] = turn
            update.setdefault("reports", {}).setdefault("preflight", {})["compact"] = "requested"
        return update

    node.__name__ = "preflight"
    return node


def with_recall(
    tools: Sequence[Any] | None,
    policy: ContextPolicy,
    *,
    recall: bool,
    compact_tool: bool,
    model: Any,
    token_counter: TokenCounter | None,
) -> tuple[list[Any], ContextPolicy]:
    """The tools and policy of an agent built with ``recall`` / ``compact_tool``.

    Args:
        tools: The user's tools.
        policy: The user's policy.
        recall: Add the search/read tools and turn ``policy.recall`` on.
        compact_tool: Add ``compact_context``.
        model: The agent's chat model (its profile gives the window), or ``None``.
        token_counter: Counter of the compaction gate.

    Returns:
        ``(tools, policy)``.
    """
    out = list(tools or ())
    if recall and not policy.recall:
        policy = policy.replace(recall=True)
    profile = agent_stages.model_profile(model) if model is not None else None
    window = resolve_context_window(policy, profile).window
    extra = recall_tools(
        max_read_chars=per_result_cap_chars(policy, window),
        compact_tool=compact_tool,
        policy=policy,
        model=model,
        token_counter=token_counter,
    )
    if not recall:
        extra = extra[2:]
    return [*out, *extra], policy
