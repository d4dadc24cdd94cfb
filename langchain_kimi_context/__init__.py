"""langchain-kimi-context: long Kimi (Moonshot) sessions, cheap and unbreakable.

Example:
    >>> from langchain_kimi_context import ContextPolicy, get_profile
    >>> ContextPolicy().compact_trigger_ratio, get_profile("kimi-k2.5").context_window
    (0.85, 262144)
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
from langchain_kimi_context.errors import (
    ContextWindowTooSmallError,
    KimiAPIContextOverflowError,
    KimiAuthenticationError,
    KimiConfigurationError,
    KimiContentFilterError,
    KimiContextOverflowError,
    KimiEmptyResponseError,
    KimiInvalidRequestError,
    KimiNotFoundError,
    KimiPermissionDeniedError,
    KimiQuotaExceededError,
    KimiRateLimitError,
    KimiServerError,
    is_retryable_error,
)
from langchain_kimi_context.profiles import (
    KimiModelProfile,
    Pricing,
    get_profile,
    register_profile,
)

__version__ = "0.1.0"

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
    "ContextWindowTooSmallError",
    "DedupeFileReads",
    "KimiAPIContextOverflowError",
    "KimiAuthenticationError",
    "KimiConfigurationError",
    "KimiContentFilterError",
    "KimiContextOverflowError",
    "KimiEmptyResponseError",
    "KimiInvalidRequestError",
    "KimiModelProfile",
    "KimiNotFoundError",
    "KimiPermissionDeniedError",
    "KimiQuotaExceededError",
    "KimiRateLimitError",
    "KimiServerError",
    "LLMCompaction",
    "OverflowRecovery",
    "Pricing",
    "RecoveryOutcome",
    "__version__",
    "acompact",
    "amaybe_compact",
    "apply_compactions",
    "compact",
    "current_context_tokens",
    "default_compaction",
    "get_profile",
    "is_retryable_error",
    "learn_context_window",
    "learned_context_window",
    "maybe_compact",
    "register_profile",
    "should_compact",
]
