"""The canonical pipeline: ONE ordered tuple of stages, run by every face of the package.

:data:`PIPELINE_STAGES` is the pipeline as data: named stages in their canonical order,
each a function ``(messages, ctx) -> (messages, report | None)`` over a small frozen
:class:`StageContext`. :func:`prepare_context` checks the window, folds the tuple
(:func:`run_stages`) and combines the reports; the agent builds one graph node per stage
from the same tuple; the middleware and the memory API call ``prepare_context`` or the
agent. So every face sends what the same stages produce, in the same order:

window check (raises before any work) -> ``sanitize`` -> ``repair_pairing`` ->
``limit_turns`` -> ``repair_after_limit`` (repairs pairing again, only when the limit cut
something: a cut can orphan tool results) -> ``truncate_results`` (estimates the final
messages, truncates tool results when the estimate says truncation is the route, or
always/never per ``policy.tool_result_truncation``, and re-estimates if anything was
truncated; see ``truncate_for_request``).

Stages that change nothing return their input list unchanged, so a clean history costs
one pass per stage and no copies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias, TypeVar, cast

from langchain_core.messages import BaseMessage, MessageLikeRepresentation

from langchain_kimi_context.context.guard import (
    SupportsTokenCounting,
    WindowInfo,
    _check_window,
    _window_warning,
    resolve_context_window,
    resolve_token_counter,
)
from langchain_kimi_context.context.pairing import repair_tool_pairing
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import (
    LimitReport,
    PairingReport,
    PipelineReport,
    RequestTruncationReport,
    SanitizeReport,
)
from langchain_kimi_context.context.sanitize import sanitize_messages
from langchain_kimi_context.context.truncation import truncate_for_request
from langchain_kimi_context.context.turns import limit_history_turns
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = [
    "PIPELINE_STAGES",
    "PipelineStage",
    "StageContext",
    "StageFunction",
    "StageReport",
    "prepare_context",
    "run_stages",
]

StageReport: TypeAlias = SanitizeReport | PairingReport | LimitReport | RequestTruncationReport
"""What a pipeline stage reports."""


@dataclass(frozen=True, kw_only=True)
class StageContext:
    """Everything a pipeline stage may read besides the messages (frozen, no I/O).

    Build one per request with :meth:`build` (or, as ``prepare_context`` does, from a
    window already checked); :func:`run_stages` passes it from stage to stage, recording
    what an earlier stage decided (:meth:`after`).

    Attributes:
        policy: Every threshold.
        window: The resolved context window.
        token_counter: The token counter.
        profile: The model profile (thinking mode for sanitizing), if known.
        tools: Tool schemas that will be sent (counted by the estimate).
        session_key: Picks the history limit by session kind.
        window_warning: The small-window warning text, if any (put in the guard report).
        limit_cut: Whether ``limit_turns`` cut the history in this run (decides whether
            ``repair_after_limit`` has anything to do).

    Example:
        >>> ctx = StageContext.build(ContextPolicy(context_window=100_000))
        >>> ctx.window.window, ctx.limit_cut
        (100000, False)
    """

    policy: ContextPolicy
    window: WindowInfo
    token_counter: SupportsTokenCounting
    profile: KimiModelProfile | None = None
    tools: Sequence[Any] | None = None
    session_key: str | None = None
    window_warning: str | None = None
    limit_cut: bool = False

    @classmethod
    def build(
        cls,
        policy: ContextPolicy,
        *,
        profile: KimiModelProfile | int | None = None,
        token_counter: SupportsTokenCounting | None = None,
        tools: Sequence[Any] | None = None,
        session_key: str | None = None,
    ) -> StageContext:
        """Resolve the window and the counter (no check, nothing emitted: the guard does).

        Args:
            policy: Every threshold.
            profile: The model profile, or a learned window in tokens, or ``None``.
            token_counter: Counter (``None`` = the package default).
            tools: Tool schemas that will be sent.
            session_key: Picks the history limit by session kind.

        Returns:
            The context for the first stage.

        Example:
            >>> from langchain_kimi_context import get_profile
            >>> ctx = StageContext.build(ContextPolicy(), profile=get_profile("kimi-k2.6"))
            >>> ctx.window.window, ctx.profile.name
            (262144, 'kimi-k2.6')
        """
        window = resolve_context_window(policy, profile)
        return cls(
            policy=policy,
            window=window,
            token_counter=resolve_token_counter(token_counter),
            profile=profile if isinstance(profile, KimiModelProfile) else None,
            tools=tools,
            session_key=session_key,
            window_warning=_window_warning(policy, window),
        )

    def after(self, report: StageReport | None) -> StageContext:
        """The context the next stage sees, given what this stage reported.

        Args:
            report: The report of the stage that just ran.

        Returns:
            ``self``, or a copy recording the decision (``limit_cut``).

        Example:
            >>> ctx = StageContext.build(ContextPolicy())
            >>> cut = LimitReport(limit=1, limit_source="argument", dropped_messages=("u0",))
            >>> ctx.after(cut).limit_cut, ctx.after(None) is ctx
            (True, True)
        """
        if isinstance(report, LimitReport) and report.cut != self.limit_cut:
            return dataclasses.replace(self, limit_cut=report.cut)
        return self


StageFunction: TypeAlias = Callable[
    [Sequence[BaseMessage], StageContext], tuple[Sequence[BaseMessage], StageReport | None]
]
"""The uniform stage signature: ``(messages, ctx) -> (messages, report | None)``."""


class PipelineStage(NamedTuple):
    """One named stage of :data:`PIPELINE_STAGES`.

    Attributes:
        name: The stage name (also the agent's graph node name).
        run: The stage function (``StageFunction``); returns its input list unchanged
            (the same object) when it changes nothing, and ``None`` as the report when
            it had nothing to do.

    Example:
        >>> [stage.name for stage in PIPELINE_STAGES][:2]
        ['sanitize', 'repair_pairing']
    """

    name: str
    run: StageFunction


def _sanitize(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StageReport]:
    """``sanitize_messages`` (also converts message-like records to messages)."""
    return sanitize_messages(messages, ctx.policy, profile=ctx.profile)


def _repair_pairing(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StageReport]:
    """``repair_tool_pairing``: every call answered once, results right after their call."""
    return repair_tool_pairing(messages, ctx.policy)


def _limit_turns(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StageReport]:
    """``limit_history_turns`` for the session kind of ``ctx.session_key``."""
    return limit_history_turns(messages, ctx.policy, session_key=ctx.session_key)


def _repair_after_limit(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StageReport | None]:
    """``repair_tool_pairing`` again when the limit cut something (else ``None``)."""
    if not ctx.limit_cut:
        return messages, None
    return repair_tool_pairing(messages, ctx.policy)


def _truncate_results(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], StageReport]:
    """``truncate_for_request``: estimate, truncate when the route says so, re-estimate."""
    return truncate_for_request(
        messages,
        ctx.policy,
        ctx.window,
        token_counter=ctx.token_counter,
        tools=ctx.tools,
        warning=ctx.window_warning,
    )


PIPELINE_STAGES: tuple[PipelineStage, ...] = (
    PipelineStage("sanitize", _sanitize),
    PipelineStage("repair_pairing", _repair_pairing),
    PipelineStage("limit_turns", _limit_turns),
    PipelineStage("repair_after_limit", _repair_after_limit),
    PipelineStage("truncate_results", _truncate_results),
)
"""The pipeline, in its canonical order (after the window check).

- ``sanitize``: ``sanitize_messages`` (report: ``SanitizeReport``).
- ``repair_pairing``: ``repair_tool_pairing`` (``PairingReport``).
- ``limit_turns``: ``limit_history_turns`` (``LimitReport``; sets ``ctx.limit_cut``).
- ``repair_after_limit``: ``repair_tool_pairing`` again when the limit cut something
  (``PairingReport``), else a pass-through reporting ``None``.
- ``truncate_results``: ``truncate_for_request`` (``RequestTruncationReport``, whose
  ``guard`` is the estimate of the final messages).

``prepare_context`` folds this tuple; ``create_kimi_agent`` makes one node per stage,
named after it.

Example:
    >>> [stage.name for stage in PIPELINE_STAGES]
    ['sanitize', 'repair_pairing', 'limit_turns', 'repair_after_limit', 'truncate_results']
"""


def run_stages(
    messages: Sequence[BaseMessage],
    ctx: StageContext,
    stages: Sequence[PipelineStage] = PIPELINE_STAGES,
) -> tuple[Sequence[BaseMessage], StageContext, dict[str, StageReport | None]]:
    """Fold ``stages`` over ``messages``: each stage's output is the next one's input.

    Args:
        messages: The stage input (never mutated).
        ctx: The context for the first stage.
        stages: The stages to run, in order (default: the whole pipeline; a prefix of
            it resumes nothing, it just stops early).

    Returns:
        ``(messages, ctx after the last stage, {stage name: report})``.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> msgs = [HumanMessage("hi", id="u")]
        >>> out, ctx, reports = run_stages(msgs, StageContext.build(ContextPolicy()))
        >>> out is msgs, reports["repair_after_limit"], reports["truncate_results"].applied
        (True, None, False)
    """
    reports: dict[str, StageReport | None] = {}
    current = messages
    for name, run in stages:
        current, report = run(current, ctx)
        reports[name] = report
        ctx = ctx.after(report)
    return current, ctx, reports


_R = TypeVar("_R")


def _get(reports: dict[str, StageReport | None], name: str, kind: type[_R]) -> _R:
    report = reports[name]
    assert isinstance(report, kind), (name, report)
    return report


def prepare_context(
    messages: Sequence[MessageLikeRepresentation],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | int | None = None,
    token_counter: SupportsTokenCounting | None = None,
    tools: Sequence[Any] | None = None,
    session_key: str | None = None,
) -> tuple[list[BaseMessage], PipelineReport]:
    """Run the whole pipeline before a model call: the window check, then every stage.

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
    ctx = StageContext(
        policy=policy,
        window=info,
        token_counter=resolve_token_counter(token_counter),
        profile=profile if isinstance(profile, KimiModelProfile) else None,
        tools=tools,
        session_key=session_key,
        window_warning=warning,
    )
    # the first stage (sanitize) accepts any message-like record and returns messages
    current, _, reports = run_stages(cast(Sequence[BaseMessage], messages), ctx)
    last = _get(reports, "truncate_results", RequestTruncationReport)
    after = reports["repair_after_limit"]
    assert after is None or isinstance(after, PairingReport)
    changed = current is not messages
    out = current if isinstance(current, list) else list(current)
    return out, PipelineReport(
        guard=last.guard,
        sanitize=_get(reports, "sanitize", SanitizeReport),
        pairing=_get(reports, "repair_pairing", PairingReport),
        limit=_get(reports, "limit_turns", LimitReport),
        pairing_after_limit=after,
        truncation=last.truncation,
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
