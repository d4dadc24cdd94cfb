"""Writing to a session: appends (no model call) and ``chat`` turns (one graph run).

Contract:

* Appends go to the session's append-only log in one checkpoint write each call; a
  message over ``policy.max_append_tokens`` is refused before anything is written; a
  stream is committed only once complete.
* A ``chat`` turn is one run of the agent graph on the session's thread, holding the
  session. Compactions the graph made are registered as snapshots; with
  ``on_threshold="truncate"`` the memory's own trigger runs after the turn.
* A failed or interrupted turn leaves the session as it was before the turn (a new head
  on the checkpoint before it) and raises
  :class:`~langchain_kimi_context.SessionTurnError`; no completed model call is repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph

from langchain_kimi_context.memory.core import MessageLike, exclusive, to_message
from langchain_kimi_context.memory.errors import SessionTurnError
from langchain_kimi_context.memory.maintenance import MaintenanceMixin
from langchain_kimi_context.memory.registry import new_id

__all__ = ["TurnsMixin"]


class TurnsMixin(MaintenanceMixin):
    """The writing side of :class:`~langchain_kimi_context.RollingSnapshotMemory`."""

    # ------------------------------------------------------------------ appends
    def append_message(
        self,
        session_id: str,
        message: MessageLike,
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
        """
        msg = to_message(message)
        self._check_size(msg)
        return self._append(session_id, [msg])[0]

    def append_messages(
        self,
        session_id: str,
        messages: Sequence[MessageLike],
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
        """
        msgs = [to_message(m) for m in messages]
        if enforce_limit:
            for m in msgs:
                self._check_size(m)
        if not msgs:
            return []
        return self._append(session_id, msgs)

    @staticmethod
    def _join_chunks(chunks: Sequence[BaseMessageChunk | str], role: str) -> BaseMessage:
        if not chunks:
            raise ValueError("append_stream got an empty stream: nothing to append")
        if all(isinstance(c, str) for c in chunks):
            text = "".join(str(c) for c in chunks)
            return to_message((role, text))
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
        """
        collected = [c async for c in chunks]
        return await asyncio.to_thread(self.append_stream, session_id, collected, role=role)

    # ------------------------------------------------------------------ chat
    @exclusive
    def chat(self, session_id: str, user_input: str | BaseMessage) -> AIMessage:
        """Run one chat round (user message in, final assistant message out) on the agent graph.

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
        msg = to_message(user_input)
        return msg if msg.id else msg.model_copy(update={"id": new_id("msg")})

    def _begin_turn(
        self, session_id: str, user_input: str | BaseMessage
    ) -> tuple[CompiledStateGraph[Any, Any, Any, Any], RunnableConfig, str, int]:
        self._check_size(to_message(user_input))
        graph = self._session_graph(session_id)
        before = self._head(session_id)
        state = graph.get_state(self._config(session_id)).values or {}
        return graph, self._config(session_id), before, len(state.get("compactions") or [])

    def _fail_turn(self, session_id: str, before: str, exc: BaseException | None) -> Any:
        failed = self._head(session_id)
        self._write(session_id, {"reports": {"rollback": {"to": before}}}, before)
        snap = self.registry.register_snapshot(session_id, before, name=None, reason="before_turn")
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
            self.registry.register_snapshot(
                session_id, str(checkpoint), name=None, reason="compaction"
            )
        if self.on_threshold == "truncate":
            self._maybe_truncate(session_id, state)
        log = list(state.get("messages") or [])
        last = next((m for m in reversed(log) if isinstance(m, AIMessage)), None)
        return last if last is not None else AIMessage("")
