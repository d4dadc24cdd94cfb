"""Preflight guard: resolve the context window, refuse tiny ones, estimate the request.

Runs before any model call. The window comes from (first that is known and positive):
the explicit ``ContextPolicy.context_window``, the model profile (or a window the caller
learned, e.g. from ``/v1/models`` or an overflow error), ``policy.default_context_window``.
``policy.agent_context_cap`` may only lower it. A window of 0/unknown never warns or
blocks by itself: it falls back to the next source.

The estimate (messages + system + tools + reserved output) uses the package token
counter; when the request does not fit, the report names the recovery route: compact the
history, truncate oversized tool results, or both, depending on how much tool-result
text truncation could free.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage, ToolMessage

from langchain_kimi_context.context._common import content_text_length
from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import GuardReport, RecoveryRoute
from langchain_kimi_context.errors import ContextWindowTooSmallError
from langchain_kimi_context.profiles import (
    LEARNED_SOURCE,
    KimiModelProfile,
    learned_context_window,
)
from langchain_kimi_context.tokens.protocol import SupportsTokenCounting, resolve_token_counter

__all__ = [
    "ContextWindowWarning",
    "SupportsTokenCounting",
    "WindowInfo",
    "estimate_request",
    "preflight_guard",
    "resolve_context_window",
    "resolve_token_counter",
]


class ContextWindowWarning(UserWarning):
    """Emitted when the resolved window is below ``policy.warn_below_context_window``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = preflight_guard([], ContextPolicy(context_window=20_000))
        >>> caught[0].category.__name__
        'ContextWindowWarning'
    """


@dataclass(frozen=True)
class WindowInfo:
    """The resolved context window and where it came from.

    Attributes:
        window: Tokens.
        source: ``"policy.context_window"``, ``"profile:<model> (<source>)"``,
            ``"learned"``, ``"default"`` or ``"policy.agent_context_cap"``.
        uncapped_window: The window before the agent cap.
        uncapped_source: Its source.

    Example:
        >>> WindowInfo(100_000, "default", 100_000, "default").window
        100000
    """

    window: int
    source: str
    uncapped_window: int
    uncapped_source: str


def resolve_context_window(
    policy: ContextPolicy, profile: KimiModelProfile | int | None = None
) -> WindowInfo:
    """Resolve the window: explicit policy > profile / learned > default; cap only lowers.

    This is the one window rule of the package (the compaction engine and overflow
    recovery call it too). A window a server error named for the profile's model
    (:func:`~langchain_kimi_context.profiles.learned_context_window`) lowers the result,
    whatever its source.

    Args:
        policy: The policy (``context_window``, ``agent_context_cap``,
            ``default_context_window``).
        profile: The model profile, or a window (int) learned at run time (from
            ``/v1/models`` or a provider overflow error), or ``None``.

    Returns:
        The window and its source. 0/unknown values fall through to the next source.

    Example:
        >>> from langchain_kimi_context import get_profile
        >>> info = resolve_context_window(ContextPolicy(), get_profile("moonshot-v1-32k"))
        >>> info.window, info.source
        (32768, 'profile:moonshot-v1-32k (builtin)')
        >>> resolve_context_window(ContextPolicy(agent_context_cap=50_000), 0).source
        'policy.agent_context_cap'
        >>> resolve_context_window(ContextPolicy(agent_context_cap=10**9), 64_000).window
        64000
    """
    if policy.context_window:
        window, source = policy.context_window, "policy.context_window"
    elif isinstance(profile, KimiModelProfile) and profile.context_window > 0:
        window, source = profile.context_window, f"profile:{profile.name} ({profile.source})"
    elif isinstance(profile, int) and not isinstance(profile, bool) and profile > 0:
        window, source = profile, "learned"
    else:
        window, source = policy.default_context_window, "default"
    # The server's word is a hard limit: a window it named lowers even an explicit one.
    if isinstance(profile, KimiModelProfile):
        learned = learned_context_window(profile.name)
        if learned is not None and learned < window:
            window, source = learned, f"profile:{profile.name} ({LEARNED_SOURCE})"
    cap = policy.agent_context_cap
    if cap and cap < window:
        return WindowInfo(cap, "policy.agent_context_cap", window, source)
    return WindowInfo(window, source, window, source)


def _check_window(
    policy: ContextPolicy, profile: KimiModelProfile | int | None
) -> tuple[WindowInfo, str | None]:
    info = resolve_context_window(policy, profile)
    if info.window < policy.hard_min_context_window:
        raise ContextWindowTooSmallError(
            window=info.window, source=info.source, minimum=policy.hard_min_context_window
        )
    warning = _window_warning(policy, info)
    if warning is not None:
        warnings.warn(warning, ContextWindowWarning, stacklevel=3)
    return info, warning


def _window_warning(policy: ContextPolicy, info: WindowInfo) -> str | None:
    """The small-window warning text for ``info`` (``None`` when the window is large)."""
    if info.window >= policy.warn_below_context_window:
        return None
    return (
        f"Context window of {info.window} tokens (from {info.source}) is below "
        f"{policy.warn_below_context_window} tokens: long sessions will compact often. "
        "Prefer a model with a larger window."
    )


def estimate_request(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    info: WindowInfo,
    *,
    token_counter: SupportsTokenCounting | None = None,
    tools: Sequence[Any] | None = None,
    warning: str | None = None,
) -> GuardReport:
    """Estimate the request for an already-resolved window and pick the recovery route.

    Route: ``"none"`` when it fits; ``"truncate_tool_results"`` when truncating tool
    results (down to ``tool_result_min_keep_chars`` each) frees enough;
    ``"compact"`` when no tool-result text is reducible; else ``"compact_then_truncate"``.

    Args:
        messages: The messages that will be sent (system messages included).
        policy: Thresholds (``reserved_output_tokens``, ``tool_result_min_keep_chars``).
        info: The resolved window (``resolve_context_window``).
        token_counter: Counter (``None`` = the package default).
        tools: Tool schemas sent with the request.
        warning: The small-window warning text, if any, to put in the report.

    Returns:
        The guard report.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> info = resolve_context_window(ContextPolicy(context_window=20_000))
        >>> r = estimate_request([HumanMessage("hi")], ContextPolicy(reserved_output_tokens=100),
        ...                      info)
        >>> r.fits, r.route
        (True, 'none')
    """
    counter = resolve_token_counter(token_counter)
    message_tokens = counter.count_messages(messages)
    count = counter.count_message
    system_tokens = 0
    for message in messages:
        if not isinstance(message, SystemMessage):
            break
        system_tokens += count(message)
    tool_schema_tokens = counter.count_tools(list(tools)) if tools else 0
    estimated = message_tokens + tool_schema_tokens
    required = estimated + policy.reserved_output_tokens
    overflow = max(0, required - info.window)
    tool_result_tokens = 0
    reducible = 0
    if overflow:
        min_keep = policy.tool_result_min_keep_chars
        for message in messages:
            if isinstance(message, ToolMessage):
                tokens = count(message)
                tool_result_tokens += tokens
                length = content_text_length(message.content)
                if length > min_keep and not is_marked(message, "truncated_tool_result"):
                    reducible += tokens * (length - min_keep) // length
    tool_loop_limit = int(info.window * policy.tool_loop_overflow_share)
    route: RecoveryRoute
    if not overflow:
        route = "none"
    elif reducible >= overflow:
        route = "truncate_tool_results"
    elif reducible == 0:
        route = "compact"
    else:
        route = "compact_then_truncate"
    return GuardReport(
        window=info.window,
        window_source=info.source,
        uncapped_window=info.uncapped_window,
        uncapped_source=info.uncapped_source,
        minimum=policy.hard_min_context_window,
        warn=warning is not None,
        warning=warning,
        message_tokens=message_tokens,
        system_tokens=system_tokens,
        tool_schema_tokens=tool_schema_tokens,
        reserved_output_tokens=policy.reserved_output_tokens,
        estimated_tokens=estimated,
        required_tokens=required,
        fits=not overflow,
        overflow_tokens=overflow,
        tool_result_tokens=tool_result_tokens,
        reducible_tool_result_tokens=reducible,
        route=route,
        tool_loop_limit=tool_loop_limit,
        exceeds_tool_loop_limit=required > tool_loop_limit,
    )


def preflight_guard(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | int | None = None,
    token_counter: SupportsTokenCounting | None = None,
    tools: Sequence[Any] | None = None,
) -> tuple[Sequence[BaseMessage], GuardReport]:
    """Check the window and estimate the request before any model call.

    Args:
        messages: The messages about to be sent (returned unchanged).
        policy: Window sources and thresholds.
        profile: Model profile, or a learned window in tokens, or ``None``.
        token_counter: Counter (``None`` = the package default).
        tools: Tool schemas sent with the request.

    Returns:
        ``(messages, report)``; ``messages`` is the very same object.

    Raises:
        ContextWindowTooSmallError: If the window is below
            ``policy.hard_min_context_window`` (names the window, its source and the fix).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_kimi_context import get_profile
        >>> msgs = [HumanMessage("hello")]
        >>> out, report = preflight_guard(msgs, ContextPolicy(), profile=get_profile("kimi-k2.6"))
        >>> out is msgs, report.window, report.fits
        (True, 262144, True)
        >>> preflight_guard(msgs, ContextPolicy(context_window=8_192))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.ContextWindowTooSmallError: Context window of 8192 tokens (from policy.context_window) is below the hard minimum of 16000 tokens: ...
    """  # noqa: E501
    info, warning = _check_window(policy, profile)
    report = estimate_request(
        messages, policy, info, token_counter=token_counter, tools=tools, warning=warning
    )
    return messages, report
