"""Shrinking a session's context: the end-of-turn check, ``truncate`` and ``compress``.

Contract:

* Every way the memory makes what the model sees smaller lives here:
  :meth:`~MaintenanceMixin.maintain` (the end-of-turn check for faces that append
  without running the graph), ``_maybe_truncate`` (the ``on_threshold="truncate"``
  trigger after a ``chat`` turn), :meth:`~MaintenanceMixin.truncate` (drop the head,
  keep whole recent turns) and :meth:`~MaintenanceMixin.compress` (a structured LLM
  summary of the older turns).
* None of them edits the log: each appends one
  :class:`~langchain_kimi_context.CompactionRecord` to the session's ``compactions``
  and registers a snapshot of the state before it, so the change can be rolled back.
* A summary that failed is never stored; a truncation that would keep everything
  changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.messages import AIMessage, SystemMessage

from langchain_kimi_context.agent import stages as _stages
from langchain_kimi_context.agent.nodes import AgentRuntime
from langchain_kimi_context.context.compaction import (
    CompactionRecord,
    LLMCompaction,
    apply_compactions,
    compact,
    should_compact,
)
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.messages import is_system
from langchain_kimi_context.context.messages import is_user_turn as is_real_user_turn
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.memory.core import MemoryCore, exclusive
from langchain_kimi_context.memory.results import CompressResult, TruncateResult

__all__ = ["MaintenanceMixin"]


class MaintenanceMixin(MemoryCore):
    """The compaction side of :class:`~langchain_kimi_context.RollingSnapshotMemory`."""

    @exclusive
    def maintain(self, session_id: str) -> bool:
        """Run the end-of-turn check outside ``chat``: snapshot + compact/truncate if due.

        ``chat`` does this itself (inside the graph); faces that append messages without
        calling the graph (the chat-history adapter) call this after each exchange. The
        trigger is the graph's (``should_compact`` on server usage + estimate).

        Args:
            session_id: The session.

        Returns:
            Whether the context was compacted or truncated.
        """
        graph = self._session_graph(session_id)
        runtime = self._runtime(graph)
        state = self._graph_state(graph, session_id)
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
        self.registry.register_snapshot(session_id, head, name=None, reason="compaction")
        self._write(session_id, {"compactions": [record]})
        return True

    def _context_tokens(self, state: Mapping[str, Any], runtime: AgentRuntime) -> int:
        view = self._view(state)
        return runtime._tracker(state).current_size(view, runtime.tool_schemas or None)

    def _maybe_truncate(self, session_id: str, state: Mapping[str, Any]) -> None:
        runtime = self._runtime(self._session_graph(session_id))
        tokens = self._context_tokens(state, runtime)
        window = resolve_context_window(self.policy, runtime.profile).window
        if should_compact(tokens, window, self.policy):
            self.truncate(session_id, preserve_len=self.preserve_len, reason="threshold")

    @exclusive
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
        """
        self._check_preserve(preserve_len)
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
        snap = self.registry.register_snapshot(session_id, before, name=None, reason=reason)
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

    @exclusive
    def compress(
        self, session_id: str, ratio: float = 4, format: Literal["outline"] = "outline"
    ) -> CompressResult:
        r"""Structured-summary compaction of all but the recent turns, aiming at ``ratio``:1.

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
        snap = self.registry.register_snapshot(session_id, before, name=None, reason="compress")
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
