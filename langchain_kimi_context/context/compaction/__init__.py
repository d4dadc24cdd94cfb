"""Compaction and overflow recovery: shrink what the model sees, never lose the record.

* Trigger: :func:`should_compact` (budget, ratio, reserve and absolute forms) on
  :func:`current_context_tokens` (last server usage + estimate since); the default
  budget is :func:`price_budget`, the size that is cheapest per call at the model's
  prices (:func:`budget_for`).
* Strategies (:class:`Compaction` protocol, composable with :class:`CompositeCompaction`):
  structural first (:class:`DedupeFileReads`, :class:`CollapseCodeBlocks`,
  :class:`ClearToolResults`), then :class:`LLMCompaction` (structured summary);
  :class:`TruncateHead` drops the head instead.
* Records: :class:`CompactionRecord` anchors over the append-only log;
  :func:`apply_compactions` rebuilds the view.
* Running: :func:`compact` / :func:`acompact` / :func:`maybe_compact` return
  ``(view, CompactionReport)``; all-or-nothing with a timeout.
* Service: :class:`CompactionService`, what every face calls (apply records, decide on
  the calibrated size, run the face's strategy, build overflow recovery).
* Savings: :func:`savings_ledger` (per compaction: tokens before/after, money saved).
* Overflow: :class:`OverflowRecovery` (compact -> truncate tool results -> readable
  ``KimiContextOverflowError``) and the learned-window table.

Example:
    >>> from langchain_core.messages import HumanMessage
    >>> from langchain_kimi_context.context.policy import ContextPolicy
    >>> bool(should_compact(223_000, 262_144, ContextPolicy()))
    True
    >>> view, report = compact([HumanMessage("hi", id="1")])
    >>> report.changed
    False
"""

from langchain_kimi_context.context.compaction._common import TokenCounterLike
from langchain_kimi_context.context.compaction.base import (
    Compaction,
    CompactionCancelledError,
    CompactionContext,
    CompactionDraft,
    CompositeCompaction,
    LocalCompaction,
)
from langchain_kimi_context.context.compaction.budget import (
    PriceBudget,
    expected_cost_per_call,
    price_budget,
)
from langchain_kimi_context.context.compaction.engine import (
    CompactionReport,
    acompact,
    compact,
    default_compaction,
)
from langchain_kimi_context.context.compaction.llm import (
    COMPACTION_REQUEST_LEAD,
    COMPACTION_SYSTEM_PROMPT,
    SUMMARY_HEADER,
    SUMMARY_SECTIONS,
    LLMCompaction,
    render_transcript,
)
from langchain_kimi_context.context.compaction.records import (
    CompactionRecord,
    CompactionRecordError,
    RecordLike,
    apply_compactions,
    as_records,
)
from langchain_kimi_context.context.compaction.recovery import (
    OverflowRecovery,
    RecoveryOutcome,
    TruncateFn,
    ensure_fits,
    forget_learned_windows,
    learn_context_window,
    learned_context_window,
    window_from_error,
)
from langchain_kimi_context.context.compaction.savings import (
    CompactionSaving,
    SavingsLedger,
    savings_ledger,
)
from langchain_kimi_context.context.compaction.service import (
    CompactionRun,
    CompactionService,
    amaybe_compact,
    maybe_compact,
)
from langchain_kimi_context.context.compaction.structural import (
    ClearToolResults,
    CollapseCodeBlocks,
    DedupeFileReads,
    collapse_code,
    is_read_file_tool,
)
from langchain_kimi_context.context.compaction.trigger import (
    CompactionDecision,
    TriggerReason,
    budget_for,
    compaction_target,
    current_context_tokens,
    should_compact,
)
from langchain_kimi_context.context.compaction.truncate_head import TruncateHead
from langchain_kimi_context.context.messages import ensure_message_ids

__all__ = [
    "COMPACTION_REQUEST_LEAD",
    "COMPACTION_SYSTEM_PROMPT",
    "SUMMARY_HEADER",
    "SUMMARY_SECTIONS",
    "ClearToolResults",
    "CollapseCodeBlocks",
    "Compaction",
    "CompactionCancelledError",
    "CompactionContext",
    "CompactionDecision",
    "CompactionDraft",
    "CompactionRecord",
    "CompactionRecordError",
    "CompactionReport",
    "CompactionRun",
    "CompactionSaving",
    "CompactionService",
    "CompositeCompaction",
    "DedupeFileReads",
    "LLMCompaction",
    "LocalCompaction",
    "OverflowRecovery",
    "PriceBudget",
    "RecordLike",
    "RecoveryOutcome",
    "SavingsLedger",
    "TokenCounterLike",
    "TriggerReason",
    "TruncateFn",
    "TruncateHead",
    "acompact",
    "amaybe_compact",
    "apply_compactions",
    "as_records",
    "budget_for",
    "collapse_code",
    "compact",
    "compaction_target",
    "current_context_tokens",
    "default_compaction",
    "ensure_fits",
    "ensure_message_ids",
    "expected_cost_per_call",
    "forget_learned_windows",
    "is_read_file_tool",
    "learn_context_window",
    "learned_context_window",
    "maybe_compact",
    "price_budget",
    "render_transcript",
    "savings_ledger",
    "should_compact",
    "window_from_error",
]
