"""What a pipeline stage is: a named function over the messages and a small frozen context.

A stage is a :class:`PipelineStage`: a name (also the agent's graph node name) and a
function ``(messages, ctx) -> (messages, report | None)`` (:data:`StageFunction`). ``ctx``
is a :class:`StageContext`: everything a stage may read besides the messages (policy,
window, token counter, profile, tool schemas, session key), plus what an earlier stage
decided. The report satisfies :class:`~langchain_kimi_context.context.reports.StageReport`
(``changed`` and ``to_dict()``); ``None`` means the stage had nothing to do.

Each stage module declares its own stage next to the function it wraps (e.g.
``sanitize.SANITIZE_STAGE``, whose function's return type names its report type);
:data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES` lists them in order.
A stage is pure: it never mutates its input, does no I/O, and returns its input list
unchanged (the same object) when it changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from langchain_core.messages import BaseMessage

from langchain_kimi_context.context.guard import (
    SupportsTokenCounting,
    WindowInfo,
    _window_warning,
    resolve_context_window,
    resolve_token_counter,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import LimitReport, StageReport
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = ["NOTHING_TO_DO", "PipelineStage", "StageContext", "StageFunction", "StageReport"]


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
        checked: tuple[WindowInfo, str | None] | None = None,
    ) -> StageContext:
        """Resolve the window and the counter (no check, nothing emitted: the guard does).

        Args:
            policy: Every threshold.
            profile: The model profile, or a learned window in tokens, or ``None``.
            token_counter: Counter (``None`` = the package default).
            tools: Tool schemas that will be sent.
            session_key: Picks the history limit by session kind.
            checked: The window and its small-window warning when the guard has
                resolved and checked them already (``prepare_context`` does, first);
                ``None`` resolves them here.

        Returns:
            The context for the first stage.

        Example:
            >>> from langchain_kimi_context import get_profile
            >>> ctx = StageContext.build(ContextPolicy(), profile=get_profile("kimi-k2.6"))
            >>> ctx.window.window, ctx.profile.name
            (262144, 'kimi-k2.6')
        """
        if checked is None:
            window = resolve_context_window(policy, profile)
            checked = (window, _window_warning(policy, window))
        return cls(
            policy=policy,
            window=checked[0],
            token_counter=resolve_token_counter(token_counter),
            profile=profile if isinstance(profile, KimiModelProfile) else None,
            tools=tools,
            session_key=session_key,
            window_warning=checked[1],
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


NOTHING_TO_DO = "the stage had nothing to do"
"""The default :attr:`PipelineStage.skip_reason`."""


class PipelineStage(NamedTuple):
    """One named stage of :data:`~langchain_kimi_context.context.pipeline.PIPELINE_STAGES`.

    Attributes:
        name: The stage name (also the agent's graph node name).
        run: The stage function (``StageFunction``); returns its input list unchanged
            (the same object) when it changes nothing, and ``None`` as the report when
            it had nothing to do.
        skip_reason: Why the stage did nothing when it reports ``None`` (stored with the
            agent's stage report).

    Example:
        >>> from langchain_kimi_context.context.pipeline import PIPELINE_STAGES
        >>> [stage.name for stage in PIPELINE_STAGES][:2]
        ['sanitize', 'repair_pairing']
    """

    name: str
    run: StageFunction
    skip_reason: str = NOTHING_TO_DO
