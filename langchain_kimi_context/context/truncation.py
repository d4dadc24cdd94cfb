"""Truncate oversized tool results so a request fits the window.

Per-result cap (characters) = ``min(tool_result_max_window_share x window,
tool_result_single_max_window_share x window) x chars_per_token``, capped again by
``tool_result_hard_max_chars`` and never below ``tool_result_min_keep_chars``.

A cut keeps the head of the text and moves back to a newline when one is within the
last ``tool_result_newline_share`` of the kept part, then appends a marker saying how
many characters were removed. When the tail holds an error / summary / closing-JSON cue
(a traceback, ``FAILED``, ``Total:``, a final ``}``), head and tail are kept with the
marker in the middle instead. With a ``budget_chars`` for all tool results together,
results over the budget are trimmed newest first, down to ``tool_result_min_keep_chars``.

Truncated results are copies marked ``"truncated_tool_result"``; an already-truncated
result is never truncated again, so the stage is idempotent.

:func:`truncate_for_request` is the pipeline's last stage: it estimates the request,
decides whether to truncate (``policy.tool_result_truncation`` and the estimate's route),
derives the budget from the overflow, truncates and estimates again. It is THE
truncation decision: ``prepare_context`` and the agent's ``truncate_results`` node both
run it (through ``context.pipeline.PIPELINE_STAGES``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage, ToolMessage

from langchain_kimi_context.context._common import content_text_length
from langchain_kimi_context.context.guard import (
    SupportsTokenCounting,
    WindowInfo,
    estimate_request,
    resolve_context_window,
)
from langchain_kimi_context.context.markers import is_marked, with_marker
from langchain_kimi_context.context.messages import text_only_content
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import (
    RequestTruncationReport,
    TruncatedToolResult,
    TruncationReport,
)
from langchain_kimi_context.context.stage import PipelineStage, StageContext
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = [
    "TRUNCATE_RESULTS_STAGE",
    "per_result_cap_chars",
    "truncate_for_request",
    "truncate_text",
    "truncate_tool_results",
]

_TAIL_CUE = re.compile(
    r"error|exception|traceback|fail|fatal|panic|warning|summary|total|passed|exit code|"
    r"result|conclusion|错误|异常|失败|总结|总计",
    re.IGNORECASE,
)
_CLOSING_JSON = ("}", "]")


def per_result_cap_chars(policy: ContextPolicy, window: int) -> int:
    """Return the per-result character cap for ``window``.

    Args:
        policy: ``tool_result_max_window_share``, ``tool_result_single_max_window_share``,
            ``tool_result_hard_max_chars``, ``tool_result_min_keep_chars``,
            ``chars_per_token``.
        window: The context window in tokens.

    Returns:
        The cap in characters.

    Example:
        >>> per_result_cap_chars(ContextPolicy(), 262_144)
        40000
        >>> per_result_cap_chars(ContextPolicy(), 16_000)
        19200
    """
    share = min(policy.tool_result_max_window_share, policy.tool_result_single_max_window_share)
    cap = min(int(window * share * policy.chars_per_token), policy.tool_result_hard_max_chars)
    return max(cap, policy.tool_result_min_keep_chars)


def _tail_has_cue(text: str, policy: ContextPolicy) -> bool:
    tail = text[-policy.tool_result_tail_cue_chars :] if policy.tool_result_tail_cue_chars else ""
    return bool(tail) and (tail.rstrip().endswith(_CLOSING_JSON) or bool(_TAIL_CUE.search(tail)))


def truncate_text(
    text: str, keep: int, policy: ContextPolicy, *, ref: str | None = None
) -> tuple[str, int, Literal["head", "head_tail"]]:
    r"""Cut ``text`` to about ``keep`` characters (plus a marker).

    Args:
        text: The tool result text (longer than ``keep``).
        keep: Characters of the original to keep.
        policy: ``tool_result_newline_share``, ``tool_result_tail_share``,
            ``tool_result_tail_cue_chars``.
        ref: The recall ref of the whole result: the marker then says how to read the
            removed part back (``read_history``).

    Returns:
        ``(new_text, kept_chars, mode)``.

    Example:
        >>> text = "\n".join(f"line {i}" for i in range(2000))
        >>> new, kept, mode = truncate_text(text, 100, ContextPolicy())
        >>> mode, new.splitlines()[-3], "characters removed" in new
        ('head', 'line 12', True)
        >>> new, kept, mode = truncate_text("x" * 5000 + "\nTraceback: boom", 100, ContextPolicy())
        >>> mode, new.endswith("Traceback: boom")
        ('head_tail', True)
    """
    length = len(text)
    nl_share = policy.tool_result_newline_share
    mode: Literal["head", "head_tail"] = "head"
    tail_len = 0
    if _tail_has_cue(text, policy):
        mode = "head_tail"
        tail_len = int(keep * policy.tool_result_tail_share)
    head_len = keep - tail_len
    head_end = head_len
    window = int(head_len * nl_share)
    if window:
        newline = text.rfind("\n", head_len - window, head_len)
        if newline > 0:
            head_end = newline
    head = text[:head_end]
    if mode == "head" and ref is not None:
        removed = length - head_end
        return (
            f"{head}\n\n[... {removed:,} of {length:,} characters removed to fit the context "
            f"window; read_history({ref!r}, start={head_end}) returns the rest, "
            f"read_history({ref!r}) returns the whole result ...]",
            head_end,
            mode,
        )
    if mode == "head":
        removed = length - head_end
        return (
            f"{head}\n\n[... tool result truncated: {removed} of {length} characters removed "
            "to fit the context window ...]",
            head_end,
            mode,
        )
    start = length - tail_len
    window = int(tail_len * nl_share)
    if window:
        newline = text.find("\n", start, start + window)
        if newline >= 0:
            start = newline + 1
    kept = head_end + (length - start)
    removed = length - kept
    if ref is not None:
        return (
            f"{head}\n\n[... {removed:,} of {length:,} characters removed from the middle of "
            f"this tool result to fit the context window; read_history({ref!r}, "
            f"start={head_end}) returns them, read_history({ref!r}) the whole result ...]"
            f"\n\n{text[start:]}",
            kept,
            mode,
        )
    return (
        f"{head}\n\n[... {removed} of {length} characters removed from the middle of this "
        f"tool result to fit the context window ...]\n\n{text[start:]}",
        kept,
        mode,
    )


def truncate_tool_results(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    *,
    window: int | None = None,
    profile: KimiModelProfile | int | None = None,
    budget_chars: int | None = None,
) -> tuple[Sequence[BaseMessage], TruncationReport]:
    """Cut tool results above the per-result cap, then newest-first to a total budget.

    Args:
        messages: The history (never mutated).
        policy: Caps and cut rules (module docstring).
        window: The window in tokens (default: resolved from ``policy`` and ``profile``).
        profile: Model profile or learned window, used when ``window`` is not given.
        budget_chars: Characters all tool results together may use (``None``: per-result
            caps only).

    Returns:
        ``(messages, report)``; the very same sequence when nothing was cut.

    Example:
        >>> from langchain_core.messages import AIMessage, ToolMessage
        >>> call = {"id": "c1", "name": "cat", "args": {}}
        >>> h = [AIMessage("", tool_calls=[call]), ToolMessage("y" * 50_000, tool_call_id="c1",
        ...                                                    id="t1")]
        >>> out, report = truncate_tool_results(h, ContextPolicy(context_window=262_144))
        >>> report.truncated[0].removed_chars, len(out[1].content) < 40_200
        (10000, True)
        >>> truncate_tool_results(out, ContextPolicy(context_window=262_144))[0] is out
        True
    """
    if window is None:
        window = resolve_context_window(policy, profile).window
    cap = per_result_cap_chars(policy, window)
    min_keep = policy.tool_result_min_keep_chars
    new_texts: dict[int, tuple[str, int, Literal["head", "head_tail"], str]] = {}
    lengths: dict[int, int] = {}
    originals: dict[int, str] = {}
    skipped: list[int] = []
    for index, message in enumerate(messages):
        if not isinstance(message, ToolMessage):
            continue
        content = message.content
        if isinstance(content, str) and len(content) <= cap and budget_chars is None:
            continue
        text = text_only_content(content)
        if text is None:
            continue
        lengths[index] = len(text)
        if len(text) <= cap:
            continue
        if is_marked(message, "truncated_tool_result"):
            skipped.append(index)
            continue
        originals[index] = text
        new, kept, mode = truncate_text(text, cap, policy, ref=_recall_ref(message, policy))
        new_texts[index] = (new, kept, mode, "per_result_cap")
        lengths[index] = kept

    if budget_chars is not None:
        excess = sum(lengths.values()) - budget_chars
        for index in sorted(lengths, reverse=True):
            if excess <= 0:
                break
            message = messages[index]
            current = lengths[index]
            truncated_before = index not in originals and is_marked(
                message, "truncated_tool_result"
            )
            if current <= min_keep or truncated_before:
                continue
            target = max(min_keep, current - excess)
            text = originals.get(index)
            if text is None:
                text = text_only_content(message.content)
                assert text is not None
                originals[index] = text
            new, kept, mode = truncate_text(text, target, policy, ref=_recall_ref(message, policy))
            new_texts[index] = (new, kept, mode, "budget")
            excess -= current - kept
            lengths[index] = kept

    if not new_texts:
        return messages, TruncationReport(
            per_result_cap_chars=cap,
            budget_chars=budget_chars,
            skipped_already_truncated=tuple(_ref(messages, i) for i in skipped),
        )
    out = list(messages)
    truncated: list[TruncatedToolResult] = []
    for index in sorted(new_texts):
        new, kept, mode, reason = new_texts[index]
        message = messages[index]
        assert isinstance(message, ToolMessage)
        original_chars = len(originals[index])
        info: dict[str, Any] = {
            "original_chars": original_chars,
            "removed_chars": original_chars - kept,
            "mode": mode,
        }
        out[index] = with_marker(
            message.model_copy(update={"content": new}), "truncated_tool_result", **info
        )
        truncated.append(
            TruncatedToolResult(
                message_id=_ref(messages, index),
                tool_call_id=message.tool_call_id,
                original_chars=original_chars,
                kept_chars=kept,
                removed_chars=original_chars - kept,
                mode=mode,
                reason=reason,  # type: ignore[arg-type]
            )
        )
    return out, TruncationReport(
        per_result_cap_chars=cap,
        budget_chars=budget_chars,
        truncated=tuple(truncated),
        skipped_already_truncated=tuple(_ref(messages, i) for i in skipped),
    )


def truncate_for_request(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    window: WindowInfo,
    *,
    token_counter: SupportsTokenCounting | None = None,
    tools: Sequence[Any] | None = None,
    warning: str | None = None,
) -> tuple[Sequence[BaseMessage], RequestTruncationReport]:
    """Estimate the request, truncate tool results when the policy and route say so.

    Truncation runs when ``policy.tool_result_truncation`` is ``"always"``, or ``"auto"``
    and the estimate's route is ``"truncate_tool_results"``. When the request overflows,
    all tool results together get a character budget: their current length minus the
    overflow converted at their own characters-per-token ratio (rounded up), so the cut
    frees about as many tokens as the overflow. A truncation that changed something is
    followed by a fresh estimate, so the report's ``guard`` describes what will be sent.

    Args:
        messages: The prepared messages (never mutated).
        policy: ``tool_result_truncation``, the caps and cut rules, the estimate's
            thresholds.
        window: The resolved window (``resolve_context_window``).
        token_counter: Counter (``None`` = the package default).
        tools: Tool schemas sent with the request.
        warning: The small-window warning text to put in the guard report, if any.

    Returns:
        ``(messages, report)``; the very same sequence when nothing was cut.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> from langchain_kimi_context.tokens import ApproximateBackend, TokenCounter
        >>> counter = TokenCounter(backend=ApproximateBackend())
        >>> call = {"id": "c1", "name": "cat", "args": {}}
        >>> history = [HumanMessage("cat it"), AIMessage("", tool_calls=[call]),
        ...            ToolMessage("data " * 20_000, tool_call_id="c1")]
        >>> policy = ContextPolicy(context_window=20_000, reserved_output_tokens=1_000)
        >>> window = resolve_context_window(policy)
        >>> out, report = truncate_for_request(history, policy, window, token_counter=counter)
        >>> report.route, report.applied, report.guard.fits
        ('truncate_tool_results', True, True)
        >>> truncate_for_request(out, policy, window, token_counter=counter)[0] is out
        True
    """
    guard = estimate_request(
        messages, policy, window, token_counter=token_counter, tools=tools, warning=warning
    )
    mode = policy.tool_result_truncation
    route = guard.route
    if not (mode == "always" or (mode == "auto" and route == "truncate_tool_results")):
        return messages, RequestTruncationReport(
            mode=mode, route=route, applied=False, truncation=None, guard=guard
        )
    budget = None
    if guard.overflow_tokens and guard.tool_result_tokens:
        tool_chars = sum(
            content_text_length(m.content) for m in messages if isinstance(m, ToolMessage)
        )
        chars_per_token = tool_chars / guard.tool_result_tokens
        budget = max(0, tool_chars - int(guard.overflow_tokens * chars_per_token + 0.999))
    out, truncation = truncate_tool_results(
        messages, policy, window=window.window, budget_chars=budget
    )
    if truncation.changed:
        guard = estimate_request(
            out, policy, window, token_counter=token_counter, tools=tools, warning=warning
        )
    return out, RequestTruncationReport(
        mode=mode, route=route, applied=True, truncation=truncation, guard=guard
    )


def _ref(messages: Sequence[BaseMessage], index: int) -> str:
    message = messages[index]
    return message.id if message.id else f"@{index}"


def _recall_ref(message: BaseMessage, policy: ContextPolicy) -> str | None:
    """The recall ref a marker names (with ``policy.recall`` and a message id only)."""
    return message.id if policy.recall and message.id else None


def _truncate_stage(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], RequestTruncationReport]:
    """``truncate_for_request``: estimate, truncate when the route says so, re-estimate."""
    return truncate_for_request(
        messages,
        ctx.policy,
        ctx.window,
        token_counter=ctx.token_counter,
        tools=ctx.tools,
        warning=ctx.window_warning,
    )


TRUNCATE_RESULTS_STAGE = PipelineStage("truncate_results", _truncate_stage)
"""The ``truncate_results`` stage; it runs last, so its ``guard`` estimates the request
as sent (``PipelineReport.guard``)."""
