"""The context pipeline: pure, typed, idempotent stages.

Each stage is ``(messages, policy, ...) -> (messages, report)``, declared in its module
as a ``PipelineStage`` over ``(messages, StageContext) -> (messages, report | None)``.
``PIPELINE_STAGES`` is the canonical order as data, after the window guard;
``prepare_context`` and the agent's graph nodes both run that one tuple.

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
    ensure_fits,
    learn_context_window,
    learned_context_window,
    maybe_compact,
    should_compact,
)
from langchain_kimi_context.context.guard import (
    ContextWindowWarning,
    SupportsTokenCounting,
    WindowInfo,
    estimate_request,
    preflight_guard,
    resolve_context_window,
)
from langchain_kimi_context.context.pairing import (
    repair_tool_pairing,
    synthetic_tool_result,
)
from langchain_kimi_context.context.pipeline import (
    PIPELINE_STAGES,
    PipelineStage,
    StageContext,
    StageFunction,
    StageReport,
    prepare_context,
    run_stages,
)
from langchain_kimi_context.context.policy import (
    ContextPolicy,
)
from langchain_kimi_context.context.reports import (
    DroppedToolCall,
    GuardReport,
    LimitReport,
    MergedUserMessages,
    PairingReport,
    PipelineReport,
    RecoveryRoute,
    RequestTruncationReport,
    SanitizeReport,
    SyntheticToolResult,
    TruncatedToolResult,
    TruncationReport,
)
from langchain_kimi_context.context.sanitize import (
    merge_adjacent_user_messages,
    sanitize_messages,
    tool_call_problem,
)
from langchain_kimi_context.context.truncation import (
    per_result_cap_chars,
    truncate_for_request,
    truncate_text,
    truncate_tool_results,
)
from langchain_kimi_context.context.turns import (
    SessionKey,
    kept_user_turns,
    limit_history_turns,
    parse_session_key,
    resolve_history_limit,
)

__all__ = [
    "PIPELINE_STAGES",
    "ClearToolResults",
    "CollapseCodeBlocks",
    "Compaction",
    "CompactionDecision",
    "CompactionRecord",
    "CompactionRecordError",
    "CompactionReport",
    "CompositeCompaction",
    "ContextPolicy",
    "ContextWindowWarning",
    "DedupeFileReads",
    "DroppedToolCall",
    "GuardReport",
    "LLMCompaction",
    "LimitReport",
    "MergedUserMessages",
    "OverflowRecovery",
    "PairingReport",
    "PipelineReport",
    "PipelineStage",
    "RecoveryOutcome",
    "RecoveryRoute",
    "RequestTruncationReport",
    "SanitizeReport",
    "SessionKey",
    "StageContext",
    "StageFunction",
    "StageReport",
    "SupportsTokenCounting",
    "SyntheticToolResult",
    "TruncatedToolResult",
    "TruncationReport",
    "WindowInfo",
    "acompact",
    "amaybe_compact",
    "apply_compactions",
    "compact",
    "current_context_tokens",
    "default_compaction",
    "ensure_fits",
    "estimate_request",
    "kept_user_turns",
    "learn_context_window",
    "learned_context_window",
    "limit_history_turns",
    "maybe_compact",
    "merge_adjacent_user_messages",
    "parse_session_key",
    "per_result_cap_chars",
    "preflight_guard",
    "prepare_context",
    "repair_tool_pairing",
    "resolve_context_window",
    "resolve_history_limit",
    "run_stages",
    "sanitize_messages",
    "should_compact",
    "synthetic_tool_result",
    "tool_call_problem",
    "truncate_for_request",
    "truncate_text",
    "truncate_tool_results",
]
