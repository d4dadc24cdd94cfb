"""langchain-kimi-context: long Kimi (Moonshot) sessions, cheap and unbreakable.

Example:
    >>> from langchain_kimi_context import ContextPolicy, get_profile
    >>> ContextPolicy().compact_trigger_ratio, get_profile("kimi-k2.5").context_window
    (0.85, 262144)
"""

from langchain_kimi_context.chat_models import KimiChatModel
from langchain_kimi_context.context import (
    ContextWindowWarning,
    GuardReport,
    LimitReport,
    PairingReport,
    PipelineReport,
    SanitizeReport,
    TruncationReport,
    limit_history_turns,
    preflight_guard,
    prepare_context,
    repair_tool_pairing,
    sanitize_messages,
    truncate_tool_results,
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
from langchain_kimi_context.tokens import (
    ApproximateBackend,
    ContextSizeTracker,
    TiktokenBackend,
    TokenCalibrator,
    TokenCounter,
    TokenizerBackend,
    TokenizerFallbackWarning,
    acount_tokens_exact,
    count_tokens_exact,
    count_tokens_for_model,
    default_token_counter,
    set_default_token_counter,
)

__version__ = "0.1.0"

__all__ = [
    "ApproximateBackend",
    "ContextPolicy",
    "ContextSizeTracker",
    "ContextWindowTooSmallError",
    "ContextWindowWarning",
    "GuardReport",
    "KimiAPIContextOverflowError",
    "KimiAuthenticationError",
    "KimiChatModel",
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
    "LimitReport",
    "PairingReport",
    "PipelineReport",
    "Pricing",
    "SanitizeReport",
    "TiktokenBackend",
    "TokenCalibrator",
    "TokenCounter",
    "TokenizerBackend",
    "TokenizerFallbackWarning",
    "TruncationReport",
    "__version__",
    "acount_tokens_exact",
    "count_tokens_exact",
    "count_tokens_for_model",
    "default_token_counter",
    "get_profile",
    "is_retryable_error",
    "limit_history_turns",
    "preflight_guard",
    "prepare_context",
    "register_profile",
    "repair_tool_pairing",
    "sanitize_messages",
    "set_default_token_counter",
    "truncate_tool_results",
]
