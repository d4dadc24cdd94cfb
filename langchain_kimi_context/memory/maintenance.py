"""Shrinking a session's context: the end-of-turn check, ``truncate`` and ``compress``.

Contract:

* Every way the memory makes what the model sees smaller lives here, and each goes
  through :class:`~langchain_kimi_context.context.compaction.CompactionService`:
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

from langchain_kimi_context.context.compaction import (
    CompactionService,
    LLMCompaction,
    TruncateHead,
)
from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.markers import get_marker
from langchain_kimi_context.context.messages import is_system
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
        trigger and the strategy are the graph's (the compaction service on the session's
        calibrated size tracker).

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
        run = runtime.compaction_service.maybe_compact(
            list(state.get("messages") or []),
            state.get("compactions") or [],
            tracker=runtime.size_tracker(state),
            head=runtime.head(),
            snapshot_id=head,
            prepare=lambda view: runtime.prepare(view, state),
        )
        if run.record is None:
            return False
        self.registry.register_snapshot(session_id, head, name=None, reason="compaction")
        self._write(session_id, {"compactions": [run.record.to_dict()]})
        return True

    def _maybe_truncate(self, session_id: str, state: Mapping[str, Any]) -> None:
        runtime = self._runtime(self._session_graph(session_id))
        # the window rule of the memory's own policy (the graph's has its triggers off);
        # no price budget: a truncation makes no summary call to price
        window = resolve_context_window(self.policy, runtime.profile).window
        service = CompactionService(
            self.policy,
            token_counter=self.token_counter,
            tools=runtime.tool_schemas or None,
            window=window,
        )
        view = [*runtime.head(), *self._view(state)]
        if service.decide(view, state.get("compactions"), runtime.size_tracker(state)):
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
        runtime = self._runtime(self._session_graph(session_id))
        service = CompactionService(
            self.policy,
            runtime.profile,
            TruncateHead(preserve_tokens=preserve_len),
            token_counter=self.token_counter,
        )
        before = self._head(session_id)
        run = service.compact(
            list(state.get("messages") or []),
            state.get("compactions"),
            trigger=reason,
            snapshot_id=before,
        )
        report = run.report
        assert report is not None  # a forced run always reports
        if run.record is None:
            body = sum(1 for m in run.view if not is_system(m))
            tokens = report.tokens_before
            return TruncateResult(False, None, 0, body, tokens, tokens)
        snap = self.registry.register_snapshot(session_id, before, name=None, reason=reason)
        self._write(session_id, {"compactions": [run.record.to_dict()]})
        notice = run.record.summary
        dropped = int((get_marker(notice) or {}).get("truncated", 0)) if notice else 0
        kept = sum(1 for m in run.view if not is_system(m)) - 1  # the notice
        return TruncateResult(True, snap, dropped, kept, report.tokens_before, report.tokens_after)

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
        runtime = self._runtime(self._session_graph(session_id))
        state = self._state(session_id)
        log = list(state.get("messages") or [])
        records = state.get("compactions")
        tools = runtime.tool_schemas or None
        service = CompactionService(
            self.policy.replace(compact_target_ratio=float(ratio)),
            runtime.profile,
            LLMCompaction(runtime.summary_model),
            token_counter=self.token_counter,
            tools=tools,
        )
        before_tokens = self.token_counter.count_messages(service.view(log, records), tools)
        before = self._head(session_id)
        run = service.compact(
            log,
            records,
            trigger="manual",
            snapshot_id=before,
            target_tokens=max(1, int(before_tokens / ratio)),
        )
        report = run.report
        assert report is not None  # a forced run always reports
        if run.record is None:
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
        self._write(session_id, {"compactions": [run.record.to_dict()]})
        return CompressResult(
            True,
            snap,
            report.tokens_before,
            report.tokens_after,
            round(report.tokens_before / max(report.tokens_after, 1), 3),
            run.record.record_id,
            tuple(report.failures),
        )
