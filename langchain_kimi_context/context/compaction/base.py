"""The ``Compaction`` protocol, the working state strategies share, and composition."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import BaseMessage

from langchain_kimi_context.context.compaction._common import TokenCounterLike
from langchain_kimi_context.context.compaction.records import (
    CompactionRecord,
    apply_compactions,
)
from langchain_kimi_context.context.compaction.trigger import CompactionDecision
from langchain_kimi_context.context.policy import ContextPolicy

__all__ = [
    "Compaction",
    "CompactionCancelledError",
    "CompactionContext",
    "CompactionDraft",
    "CompositeCompaction",
    "LocalCompaction",
]


class CompactionCancelledError(Exception):
    """Raised inside a strategy when the compaction was abandoned (timeout).

    Example:
        >>> issubclass(CompactionCancelledError, Exception)
        True
    """


@dataclass(frozen=True)
class CompactionContext:
    """Read-only inputs of one compaction run, shared by every strategy.

    Attributes:
        log: The full log, every message with an id.
        records: Earlier records, oldest first.
        policy: Thresholds.
        token_counter: Counter used for every size decision.
        window: The context window in tokens.
        target_tokens: Strategies stop once the view is at or below this.
        tools: Tool schemas bound to the model (counted with the view).
        trigger: Why the compaction runs (``"budget"``, ``"overflow"``, ``"manual"``, ...).
        prepare: How the caller turns a view into the messages it sends (e.g. the agent's
            pipeline and system prompt); the cached-prefix summary request starts with
            exactly those messages. ``None``: the view is sent as it is.
        cancelled: Set when the run was abandoned; strategies check it between calls.
        decision: The trigger decision that asked for the run (its ``tokens`` is the
            calibrated size the trigger saw), ``None`` for a forced run.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_kimi_context.context.compaction._common import (
        ...     resolve_token_counter)
        >>> ctx = CompactionContext(log=(HumanMessage("hi", id="1"),), records=(),
        ...     policy=ContextPolicy(), token_counter=resolve_token_counter(None),
        ...     window=1000, target_tokens=500)
        >>> [m.id for m in ctx.view(CompactionDraft())]
        ['1']
    """

    log: tuple[BaseMessage, ...]
    records: tuple[CompactionRecord, ...]
    policy: ContextPolicy
    token_counter: TokenCounterLike
    window: int
    target_tokens: int
    tools: Sequence[Any] | None = None
    trigger: str = "manual"
    prepare: Callable[[list[BaseMessage]], Sequence[BaseMessage]] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    decision: CompactionDecision | None = None

    def view(self, draft: CompactionDraft) -> list[BaseMessage]:
        """Return what the model would see with ``draft`` applied.

        Args:
            draft: The pending compaction.

        Returns:
            The view.
        """
        return apply_compactions(self.log, (*self.records, draft.as_record()))

    def tokens(self, messages: Sequence[BaseMessage]) -> int:
        """Count ``messages`` plus the bound tools.

        Args:
            messages: A view.

        Returns:
            Tokens.
        """
        return self.token_counter.count_messages(messages, self.tools)

    def check_cancelled(self) -> None:
        """Raise :class:`CompactionCancelledError` if the run was abandoned.

        Raises:
            CompactionCancelledError: When cancelled.
        """
        if self.cancelled.is_set():
            msg = "compaction abandoned (timeout)"
            raise CompactionCancelledError(msg)


@dataclass(frozen=True)
class CompactionDraft:
    """The compaction being built; strategies return an updated copy, never mutate.

    Attributes:
        replacements: Structural edits ``{message_id: replacement}``.
        summary: The new summary message, when an LLM strategy produced one.
        first_kept_id: First log message kept verbatim after the new summary.
        pinned_ids: Earlier log messages kept verbatim after the new summary.
        strategies: Names of the strategies that changed something.
        failures: Human-readable failures (e.g. a summariser that kept failing).
        model_calls: Summariser calls made.

    Example:
        >>> CompactionDraft().changed
        False
    """

    replacements: Mapping[str, BaseMessage] = field(default_factory=dict)
    summary: BaseMessage | None = None
    first_kept_id: str | None = None
    pinned_ids: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    model_calls: int = 0

    @property
    def changed(self) -> bool:
        """Whether the draft changes the view at all."""
        return bool(self.replacements) or self.summary is not None

    def with_replacements(self, name: str, edits: Mapping[str, BaseMessage]) -> CompactionDraft:
        """Return a copy with structural ``edits`` added under strategy ``name``.

        Args:
            name: The strategy name.
            edits: ``{message_id: replacement}``.

        Returns:
            The updated draft (unchanged if ``edits`` is empty).
        """
        if not edits:
            return self
        merged = {**self.replacements, **edits}
        return replace(self, replacements=merged, strategies=(*self.strategies, name))

    def as_record(self, **fields: Any) -> CompactionRecord:
        """Return the draft as a record (placeholder bookkeeping unless given).

        Args:
            **fields: Record fields to set (trigger, tokens, ...).

        Returns:
            The record.
        """
        values: dict[str, Any] = {
            "record_id": "draft",
            "trigger": "manual",
            "strategy": "+".join(self.strategies),
            "tokens_before": 0,
            "tokens_after": 0,
            "ratio": 1.0,
            "summary": self.summary,
            "first_kept_id": self.first_kept_id,
            "pinned_ids": self.pinned_ids,
            "replacements": dict(self.replacements),
            "summary_model_calls": self.model_calls,
        }
        values.update(fields)
        return CompactionRecord(**values)


@runtime_checkable
class Compaction(Protocol):
    """A compaction strategy: turns a draft into a smaller one (sync and async).

    Strategies never modify the log; they add replacements or a summary to the draft.
    Structural strategies make no model call; :class:`LLMCompaction` makes one per chunk.

    Example:
        >>> from langchain_kimi_context.context.compaction import ClearToolResults
        >>> isinstance(ClearToolResults(), Compaction)
        True
    """

    name: str

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Return the updated draft."""
        ...

    async def acompact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Async variant of :meth:`compact`."""
        ...


class LocalCompaction:
    """Base of strategies that make no model call: :meth:`acompact` is :meth:`compact`.

    Subclasses set ``name`` and implement :meth:`compact`.

    Example:
        >>> from langchain_kimi_context.context.compaction import ClearToolResults
        >>> isinstance(ClearToolResults(), LocalCompaction)
        True
    """

    name: str

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Return the updated draft (subclasses implement it)."""
        raise NotImplementedError

    async def acompact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Async variant of :meth:`compact` (no I/O: the same call)."""
        return self.compact(ctx, draft)


class CompositeCompaction:
    """Run strategies in order, stopping once the view is at or below the target.

    Args:
        strategies: The strategies, cheapest (structural) first.

    Example:
        >>> from langchain_kimi_context.context.compaction import (
        ...     ClearToolResults, DedupeFileReads)
        >>> CompositeCompaction([DedupeFileReads(), ClearToolResults()]).name
        'dedupe_file_reads+clear_tool_results'
    """

    def __init__(self, strategies: Sequence[Compaction]) -> None:
        if not strategies:
            msg = "CompositeCompaction needs at least one strategy"
            raise ValueError(msg)
        self.strategies = tuple(strategies)
        self.name = "+".join(s.name for s in self.strategies)

    @staticmethod
    def _done(ctx: CompactionContext, draft: CompactionDraft) -> bool:
        """Whether the view fits the target (else: go on, unless the run was abandoned)."""
        if ctx.tokens(ctx.view(draft)) <= ctx.target_tokens:
            return True
        ctx.check_cancelled()
        return False

    def compact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Apply the strategies until the view fits the target.

        Args:
            ctx: Run inputs.
            draft: The draft so far.

        Returns:
            The updated draft.
        """
        for strategy in self.strategies:
            if self._done(ctx, draft):
                break
            draft = strategy.compact(ctx, draft)
        return draft

    async def acompact(self, ctx: CompactionContext, draft: CompactionDraft) -> CompactionDraft:
        """Async variant of :meth:`compact`."""
        for strategy in self.strategies:
            if self._done(ctx, draft):
                break
            draft = await strategy.acompact(ctx, draft)
        return draft
