"""``prepare_context``: the stages in their canonical order, with one combined report.

Order: window check (raises before any work) -> sanitize -> repair pairing ->
limit turns -> repair pairing again (only when the limit cut something: a cut can orphan tool
results) -> estimate (on the final messages) -> truncate tool results (when the estimate
says truncation is the route, or always/never per ``policy.tool_result_truncation``) ->
re-estimate if anything was truncated.

Stages that change nothing return their input list unchanged, so a clean history costs
one pass per stage and no copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, MessageLikeRepresentation, ToolMessage

from langchain_kimi_context.context._common import content_text_length
from langchain_kimi_context.context.guard import (
    SupportsTokenCounting,
    _check_window,
    estimate_request,
    resolve_token_counter,
)
from langchain_kimi_context.context.pairing import repair_tool_pairing
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import PipelineReport, TruncationReport
from langchain_kimi_context.context.sanitize import sanitize_messages
from langchain_kimi_context.context.truncation import truncate_tool_results
from langchain_kimi_context.context.turns import limit_history_turns
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = ["prepare_context"]


def prepare_context(
    messages: Sequence[MessageLikeRepresentation],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | int | None = None,
    token_counter: SupportsTokenCounting | None = None,
    tools: Sequence[Any] | None = None,
    session_key: str | None = None,
) -> tuple[list[BaseMessage], PipelineReport]:
    """Run the whole pipeline before a model call.

    Args:
        messages: The history as stored (never mutated; non-message records are
            converted or dropped and reported, see ``sanitize_messages``).
        policy: Every threshold.
        profile: The model profile (window, thinking mode), or a learned window in tokens.
        token_counter: Token counter (``None`` = the package default).
        tools: Tool schemas that will be sent (counted by the estimate).
        session_key: Picks the history limit by session kind.

    Returns:
        ``(messages, report)``: the messages to send and what every stage changed.

    Raises:
        ContextWindowTooSmallError: If the window is below the hard minimum.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
        >>> call = {"id": "c1", "name": "ls", "args": {}}
        >>> history = [
        ...     SystemMessage("you are terse", id="s"),
        ...     HumanMessage("list files", id="u1"),
        ...     AIMessage("", tool_calls=[call], id="a1"),
        ...     HumanMessage("and be quick", id="u2"),
        ...     ToolMessage("a.py b.py", tool_call_id="c1", id="t1"),
        ...     ToolMessage("a.py b.py", tool_call_id="c1", id="t1-dup"),
        ... ]
        >>> out, report = prepare_context(history, ContextPolicy())
        >>> [m.id for m in out]
        ['s', 'u1', 'a1', 't1', 'u2']
        >>> report.pairing.dropped_duplicates, report.pairing.moved_messages
        (('t1-dup',), ('u2',))
        >>> prepare_context(out, ContextPolicy())[1].changed
        False
    """
    info, warning = _check_window(policy, profile)
    counter = resolve_token_counter(token_counter)
    model_profile = profile if isinstance(profile, KimiModelProfile) else None

    current, sanitize_report = sanitize_messages(messages, policy, profile=model_profile)
    current, pairing_report = repair_tool_pairing(current, policy)
    current, limit_report = limit_history_turns(current, policy, session_key=session_key)
    pairing_after = None
    if limit_report.cut:
        current, pairing_after = repair_tool_pairing(current, policy)

    guard = estimate_request(
        current, policy, info, token_counter=counter, tools=tools, warning=warning
    )
    truncation: TruncationReport | None = None
    mode = policy.tool_result_truncation
    if mode == "always" or (mode == "auto" and guard.route == "truncate_tool_results"):
        budget = None
        if guard.overflow_tokens and guard.tool_result_tokens:
            tool_chars = sum(
                content_text_length(m.content) for m in current if isinstance(m, ToolMessage)
            )
            chars_per_token = tool_chars / guard.tool_result_tokens
            budget = max(0, tool_chars - int(guard.overflow_tokens * chars_per_token + 0.999))
        current, truncation = truncate_tool_results(
            current, policy, window=info.window, budget_chars=budget
        )
        if truncation.changed:
            guard = estimate_request(
                current, policy, info, token_counter=counter, tools=tools, warning=warning
            )

    changed = current is not messages
    out = current if isinstance(current, list) else list(current)
    return out, PipelineReport(
        guard=guard,
        sanitize=sanitize_report,
        pairing=pairing_report,
        limit=limit_report,
        pairing_after_limit=pairing_after,
        truncation=truncation,
        input_messages=len(messages),
        output_messages=len(out),
        changed=changed,
    )


def _reset_memos() -> None:
    """Forget every memo of the stages (tests compare memoised and fresh results)."""
    from langchain_kimi_context.context import pairing, sanitize, turns

    sanitize._MEMO.clear()
    sanitize._AI_MEMO.clear()
    pairing._PAIRED.clear()
    pairing._SYNTHETIC.clear()
    turns._POSITIONS.clear()
