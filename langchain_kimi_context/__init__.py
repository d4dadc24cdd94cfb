"""langchain-kimi-context: long Kimi (Moonshot) sessions, cheap and unbreakable.

Example:
    >>> from langchain_kimi_context import ContextPolicy, get_profile
    >>> ContextPolicy().compact_trigger_ratio, get_profile("kimi-k2.5").context_window
    (0.85, 262144)
"""

from langchain_kimi_context.caching import (
    AutomaticPrefixCache,
    CacheDecision,
    CacheEntry,
    CachePolicy,
    CacheRegistry,
    CacheStrategy,
    CallCost,
    CostLedger,
    ExplicitContextCache,
    InMemoryCacheRegistry,
    NoContextCache,
    PrefixBreak,
    PrefixStabilityChecker,
    SessionCost,
    StoreCacheRegistry,
    canonicalize_payload,
    create_cache_strategy,
    explicit_cache_decision,
    find_prefix_break,
    prefix_fingerprint,
    prompt_cache_key_for,
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
    "AutomaticPrefixCache",
    "CacheDecision",
    "CacheEntry",
    "CachePolicy",
    "CacheRegistry",
    "CacheStrategy",
    "CallCost",
    "ContextPolicy",
    "ContextWindowTooSmallError",
    "CostLedger",
    "ExplicitContextCache",
    "InMemoryCacheRegistry",
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
    "NoContextCache",
    "PrefixBreak",
    "PrefixStabilityChecker",
    "Pricing",
    "SessionCost",
    "StoreCacheRegistry",
    "__version__",
    "canonicalize_payload",
    "create_cache_strategy",
    "explicit_cache_decision",
    "find_prefix_break",
    "get_profile",
    "is_retryable_error",
    "prefix_fingerprint",
    "prompt_cache_key_for",
    "register_profile",
]
