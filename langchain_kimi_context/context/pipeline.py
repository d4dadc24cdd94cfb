"""The canonical pipeline: ONE ordered tuple of stages, run by every face of the package.

:data:`PIPELINE_STAGES` is the pipeline as data: named stages in their canonical order,
each a function ``(messages, ctx) -> (messages, report | None)`` over a small frozen
:class:`~langchain_kimi_context.context.stage.StageContext`, declared in its own module
next to the function it wraps. It is the only list of stages: :func:`prepare_context`
checks the window, folds the tuple (:func:`run_stages`) and keys the combined
:class:`~langchain_kimi_context.context.reports.PipelineReport` by stage name; the agent
builds one graph node per stage, named after it; the middleware and the memory API call
``prepare_context`` or the agent. So every face sends what the same stages produce, in
the same order, after the window check (which raises before any work).

Stages that change nothing return their input list unchanged, so a clean history costs
one pass per stage and no copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langchain_core.messages import BaseMessage, MessageLikeRepresentation

from langchain_kimi_context.context.guard import (
    SupportsTokenCounting,
    _check_window,
)
from langchain_kimi_context.context.pairing import (
    REPAIR_AFTER_LIMIT_STAGE,
    REPAIR_PAIRING_STAGE,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import PipelineReport, StageReport
from langchain_kimi_context.context.sanitize import SANITIZE_STAGE
from langchain_kimi_context.context.stage import PipelineStage, StageContext, StageFunction
from langchain_kimi_context.context.truncation import TRUNCATE_RESULTS_STAGE
from langchain_kimi_context.context.turns import LIMIT_TURNS_STAGE
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

PIPELINE_STAGES: tuple[PipelineStage, ...] = (
    SANITIZE_STAGE,
    REPAIR_PAIRING_STAGE,
    LIMIT_TURNS_STAGE,
    REPAIR_AFTER_LIMIT_STAGE,
    TRUNCATE_RESULTS_STAGE,
)
"""The pipeline, in its canonical order (after the window check).

Each entry is declared in its stage's module (``sanitize.SANITIZE_STAGE``, ...), whose
function documents what the stage does and, by its return type, what it reports.
``sanitize`` comes first (it turns message-like records into messages) and
``truncate_results`` last (its estimate is of the request as sent).
``prepare_context`` folds this tuple; ``create_kimi_agent`` makes one node per stage,
named after it.

Example:
    >>> PIPELINE_STAGES[0].name, PIPELINE_STAGES[-1].name
    ('sanitize', 'truncate_results')
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
    for name, run, *_ in stages:
        current, report = run(current, ctx)
        reports[name] = report
        ctx = ctx.after(report)
    return current, ctx, reports


def prepare_context(
    messages: Sequence[MessageLikeRepresentation],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | int | None = None,
    token_counter: SupportsTokenCounting | None = None,
    tools: Sequence[Any] | None = None,
    session_key: str | None = None,
    stages: Sequence[PipelineStage] = PIPELINE_STAGES,
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
        stages: The stages to run, in order (default: :data:`PIPELINE_STAGES`; the
            agent takes the same tuple, ``create_kimi_agent(stages=...)``).

    Returns:
        ``(messages, report)``: the messages to send and what every stage changed,
        keyed by stage name.

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
        >>> report["repair_pairing"].dropped_duplicates, report.pairing.moved_messages
        (('t1-dup',), ('u2',))
        >>> prepare_context(out, ContextPolicy())[1].changed
        False
    """
    ctx = StageContext.build(
        policy,
        profile=profile,
        token_counter=token_counter,
        tools=tools,
        session_key=session_key,
        checked=_check_window(policy, profile),
    )
    # the first stage (sanitize) accepts any message-like record and returns messages
    current, _, reports = run_stages(cast(Sequence[BaseMessage], messages), ctx, stages)
    out = current if isinstance(current, list) else list(current)
    return out, PipelineReport(
        stages=reports,
        input_messages=len(messages),
        output_messages=len(out),
        changed=current is not messages,
    )


def _reset_memos() -> None:
    """Forget every memo of the stages (tests compare memoised and fresh results)."""
    from langchain_kimi_context.context import pairing, sanitize, turns

    sanitize._MEMO.clear()
    sanitize._AI_MEMO.clear()
    pairing._PAIRED.clear()
    pairing._SYNTHETIC.clear()
    turns._POSITIONS.clear()
