"""``RollingSnapshotMemory``: client-side Kimi sessions with snapshots, on the graph's checkpoints.

Contract:

* The public face of the memory package: session lifecycle (create, attach tools,
  list, close), reading (the view the model sees next, the full log, usage) and
  subtasks. Appends and ``chat`` turns come from
  :mod:`~langchain_kimi_context.memory.turns`, snapshots from
  :mod:`~langchain_kimi_context.memory.snapshots`, the compaction methods
  (``maintain``, ``truncate``, ``compress``) from
  :mod:`~langchain_kimi_context.memory.maintenance`, shared state and plumbing from
  :mod:`~langchain_kimi_context.memory.core`.
* A session is a LangGraph thread of the agent graph (session id = thread id); live
  sessions and snapshot names are kept by the namespace's
  :class:`~langchain_kimi_context.memory.registry.SessionRegistry` (``memory.registry``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool

from langchain_kimi_context.agent.tools import ToolRunner
from langchain_kimi_context.context.compaction.savings import savings_ledger
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.history import KimiChatMessageHistory
from langchain_kimi_context.memory.results import SessionUsage, SubtaskResult
from langchain_kimi_context.memory.snapshots import SnapshotsMixin
from langchain_kimi_context.memory.turns import TurnsMixin
from langchain_kimi_context.usage import usage_cost

__all__ = ["RollingSnapshotMemory"]

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


class RollingSnapshotMemory(TurnsMixin, SnapshotsMixin):
    """Client-side Kimi sessions (create, append, chat, snapshot, truncate, compress).

    The sessions live on the agent graph's checkpoints (session id = thread id).

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
            structured summary) or ``"truncate"`` (snapshot, then
            :meth:`truncate` to ``preserve_len``). Both snapshot first.
        preserve_len: Tokens kept by the automatic truncation.
        max_sessions: Cap on live sessions in this namespace (default 100).
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
        compaction: The compaction strategy of ``chat`` and :meth:`maintain` (and of
            overflow recovery): any object satisfying the
            :class:`~langchain_kimi_context.context.compaction.Compaction` protocol.
            ``None``: the default pipeline (structural strategies, then a structured
            summary). :meth:`truncate` and :meth:`compress` keep their own strategies
            (``TruncateHead`` and ``LLMCompaction``).

    Example:
        >>> import os, tempfile
        >>> from langchain_kimi_context import KimiChatModel
        >>> model = KimiChatModel(model="kimi-k2.6", base_url=base_url, api_key=api_key)
        >>> mem = RollingSnapshotMemory(model, db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
        >>> sid = mem.create_session(system="Be terse.")
        >>> mem.chat(sid, "@say Split utils.py in two.").content, mem.usage(sid).calls
        ('Split utils.py in two.', 1)

        Any compaction strategy (here the head is dropped instead of summarised):

        >>> from langchain_kimi_context.context.compaction import TruncateHead
        >>> mem = RollingSnapshotMemory(model, compaction=TruncateHead(),
        ...     db_path=os.path.join(tempfile.mkdtemp(), "m.db"))
        >>> mem.compaction.name
        'truncate_head'
    """

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
        """
        sid = self._claim_session_id(session_id)
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
        self._record_create(sid, config, tools=names, metadata=metadata or {})
        return sid

    def attach_tools(self, session_id: str, tools: Sequence[BaseTool | Callable[..., Any]]) -> None:
        """Give this process the tool objects of a session (e.g. after a restart).

        Args:
            session_id: The session.
            tools: Tools whose names the session uses.
        """
        self._entry(session_id, live=False)
        self._session_tools.setdefault(session_id, {}).update(ToolRunner(tools).tools)

    def sessions(self) -> list[str]:
        """Ids of the live (not closed) sessions, oldest first.

        Returns:
            Session ids.
        """
        entries = self.registry.load().sessions.values()
        return [e.session_id for e in sorted(entries, key=lambda e: e.created_at) if not e.closed]

    def close_session(self, session_id: str, *, delete: bool = False) -> None:
        """Close a session (frees a slot of ``max_sessions``); optionally delete its data.

        Args:
            session_id: The session.
            delete: Also delete its checkpoints (and snapshots) from the checkpointer.

        Raises:
            SessionNotFoundError: Unknown session.
        """
        self._entry(session_id, live=False)
        if delete:
            self.checkpointer.delete_thread(session_id)
            self.registry.record({"op": "delete", "session": session_id})
            self._session_tools.pop(session_id, None)
        else:
            self.registry.record({"op": "close", "session": session_id})

    # ------------------------------------------------------------------ reading
    def messages(self, session_id: str) -> list[BaseMessage]:
        """The messages the model would see next (records applied, pipeline run).

        Returns:
            LangChain messages, exactly as the graph's model node would send them.
        """
        graph = self._session_graph(session_id, live=False)
        state = self._graph_state(graph, session_id)
        prepared: list[BaseMessage] = self._runtime(graph).prepare(self._view(state), state)
        return prepared

    def log(self, session_id: str) -> list[BaseMessage]:
        """The full, append-only log of the session (nothing truncated or summarised).

        Returns:
            Every stored message.
        """
        return list(self._state(session_id, live=False).get("messages") or [])

    def usage(self, session_id: str) -> SessionUsage:
        """Tokens (billed and in context, by role), cost, compactions and snapshots.

        Returns:
            The usage.
        """
        graph = self._session_graph(session_id, live=False)
        runtime = self._runtime(graph)
        state = self._graph_state(graph, session_id)
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
        cost = usage_cost(usage, pricing)
        return SessionUsage(
            calls=int(usage.get("calls", 0)),
            input_tokens=prompt,
            cached_tokens=cached,
            output_tokens=output,
            total_tokens=prompt + output,
            cost=round(cost, 8),
            currency=pricing.currency,
            context_tokens=runtime.size_tracker(state).current_size(
                view, runtime.tool_schemas or None
            ),
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
