"""Shared helpers of the compaction package: ids, turns, text, token counting, windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ToolMessage,
)

from langchain_kimi_context.context.guard import resolve_context_window
from langchain_kimi_context.context.messages import (
    ensure_message_ids,
    is_system,
    message_text,
)
from langchain_kimi_context.context.messages import is_user_turn as is_real_user_turn
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.tokens.protocol import SupportsTokenCounting, resolve_token_counter

__all__ = [
    "TokenCounterLike",
    "ensure_message_ids",
    "is_real_user_turn",
    "is_system",
    "message_text",
    "resolve_token_counter",
    "resolve_window",
]


TokenCounterLike = SupportsTokenCounting
"""What compaction needs from a token counter: the package's one counter protocol."""


def resolve_window(
    policy: ContextPolicy,
    *,
    window: int | None = None,
    profile: KimiModelProfile | None = None,
) -> int:
    """Resolve the window: an explicit ``window`` stands for ``policy.context_window``.

    Otherwise the rule is :func:`~langchain_kimi_context.context.guard.resolve_context_window`
    (policy > profile > default; the cap and a window learned from the server only lower).

    Args:
        policy: The policy.
        window: An explicit window (e.g. already resolved by the caller).
        profile: The model profile, when known.

    Returns:
        The window in tokens.

    Example:
        >>> resolve_window(ContextPolicy(agent_context_cap=100_000), window=200_000)
        100000
    """
    if window:
        policy = policy.replace(context_window=window)
    return resolve_context_window(policy, profile).window


def tool_call_index(messages: Sequence[BaseMessage]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Map every tool-call id in ``messages`` to ``(tool name, args)``."""
    index: dict[str, tuple[str, dict[str, Any]]] = {}
    for message in messages:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                if call.get("id"):
                    index[str(call["id"])] = (call["name"], dict(call.get("args") or {}))
    return index


def tool_name_of(message: ToolMessage, calls: dict[str, tuple[str, dict[str, Any]]]) -> str:
    """Return the tool name of a result (from the message or the matching call)."""
    if message.name:
        return message.name
    found = calls.get(message.tool_call_id)
    return found[0] if found else "tool"
