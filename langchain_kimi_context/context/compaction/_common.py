"""Shared helpers of the compaction package: ids, turns, text, token counting, windows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.tokens.protocol import SupportsTokenCounting, resolve_token_counter

__all__ = [
    "TokenCounterLike",
    "ensure_message_ids",
    "is_real_user_turn",
    "message_text",
    "resolve_token_counter",
    "resolve_window",
]


TokenCounterLike = SupportsTokenCounting
"""What compaction needs from a token counter: the package's one counter protocol."""


def message_text(message: BaseMessage) -> str:
    """Return the visible text of ``message`` (reasoning/thinking parts excluded).

    Args:
        message: Any message.

    Returns:
        The concatenated text blocks.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> message_text(AIMessage("hi", additional_kwargs={"reasoning_content": "hmm"}))
        'hi'
    """
    if isinstance(message.content, str):
        return message.content
    parts: list[str] = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _digest(message: BaseMessage) -> str:
    payload = {
        "type": message.type,
        "content": message.content,
        "tool_call_id": getattr(message, "tool_call_id", None),
        "tool_calls": [
            {"name": c["name"], "args": c["args"], "id": c.get("id")}
            for c in getattr(message, "tool_calls", None) or []
        ],
    }
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


def ensure_message_ids(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Return the messages with an id on every one (copies for those lacking one).

    A message without an id gets ``"kc-<index>-<hash>"``: its position in the log plus
    a hash of its type and content. For an append-only log the ids are therefore the same
    on every call, which is what records rely on (LangGraph's ``add_messages`` assigns
    UUIDs anyway). Messages that already have an id are returned as they are; originals
    are never mutated.

    Args:
        messages: The full log.

    Returns:
        A new list; messages that had ids are the same objects.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> a = ensure_message_ids([HumanMessage("hi")])
        >>> a[0].id == ensure_message_ids([HumanMessage("hi")])[0].id
        True
        >>> a[0].id.startswith("kc-0-")
        True
    """
    out: list[BaseMessage] = []
    for index, message in enumerate(messages):
        if message.id:
            out.append(message)
        else:
            out.append(message.model_copy(update={"id": f"kc-{index}-{_digest(message)}"}))
    return out


def is_real_user_turn(message: BaseMessage) -> bool:
    """Return whether ``message`` starts a user turn (a summary or bootstrap never does).

    Args:
        message: Any message.

    Returns:
        ``True`` for a human message the package did not create.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_kimi_context.context.markers import with_marker
        >>> is_real_user_turn(HumanMessage("fix it"))
        True
        >>> is_real_user_turn(with_marker(HumanMessage("s"), "summary"))
        False
    """
    return isinstance(message, HumanMessage) and not is_marked(message, "summary", "bootstrap")


def resolve_window(
    policy: ContextPolicy,
    *,
    window: int | None = None,
    profile: KimiModelProfile | None = None,
) -> int:
    """Resolve the window: explicit > ``policy.context_window`` > profile > default, capped.

    Args:
        policy: The policy.
        window: An explicit window (e.g. learned from a server error).
        profile: The model profile, when known.

    Returns:
        The window in tokens (``agent_context_cap`` may only lower it).

    Example:
        >>> resolve_window(ContextPolicy(agent_context_cap=100_000), window=200_000)
        100000
    """
    resolved = window or policy.context_window
    if not resolved and profile is not None:
        resolved = profile.context_window
    if not resolved:
        resolved = policy.default_context_window
    if policy.agent_context_cap:
        resolved = min(resolved, policy.agent_context_cap)
    return int(resolved)


def is_system(message: BaseMessage) -> bool:
    """Return whether ``message`` is a system message that is not a summary."""
    return isinstance(message, SystemMessage) and not is_marked(message, "summary")


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
