"""The context pipeline: pure, typed, idempotent stages.

Each stage is ``(messages, policy) -> (messages, report)``.

No I/O happens in this package; the orchestration layer (graph nodes, memory API,
middleware) calls these functions.
"""

from langchain_kimi_context.context.compaction import (
    ClearToolResults,
    CollapseCodeBlocks,
    Compaction,
    CompactionDecision,
    CompactionRecord,
    CompactionRecordError,
    CompactionReport,
    CompositeCompaction,
    DedupeFileReads,
    LLMCompaction,
    OverflowRecovery,
    RecoveryOutcome,
    acompact,
    amaybe_compact,
    apply_compactions,
    compact,
    current_context_tokens,
    default_compaction,
    learn_context_window,
    learned_context_window,
    maybe_compact,
    should_compact,
)
from langchain_kimi_context.context.policy import ContextPolicy

__all__ = [
    "ClearToolResults",
    "CollapseCodeBlocks",
    "Compaction",
    "CompactionDecision",
    "CompactionRecord",
    "CompactionRecordError",
    "CompactionReport",
    "CompositeCompaction",
    "ContextPolicy",
    "DedupeFileReads",
    "LLMCompaction",
    "OverflowRecovery",
    "RecoveryOutcome",
    "acompact",
    "amaybe_compact",
    "apply_compactions",
    "compact",
    "current_context_tokens",
    "default_compaction",
    "learn_context_window",
    "learned_context_window",
    "maybe_compact",
    "should_compact",
]
