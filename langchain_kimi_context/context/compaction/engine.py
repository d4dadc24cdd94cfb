"""Running a compaction: ``compact`` / ``acompact`` / ``maybe_compact`` and the report.

All-or-nothing: strategies build a draft; the view and the record are produced only
when the whole run finished within ``policy.compact_timeout_s``. A run that times out
(or is abandoned) returns the pre-compaction view unchanged, never a half-compacted one.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from langchain_kimi_context.context.compaction._common import (
    TokenCounterLike,
    ensure_message_ids,
    resolve_token_counter,
    resolve_window,
)
from langchain_kimi_context.context.compaction.base import (
    Compaction,
    CompactionCancelledError,
    CompactionContext,
    CompactionDraft,
    CompositeCompaction,
)
from langchain_kimi_context.context.compaction.llm import LLMCompaction
from langchain_kimi_context.context.compaction.records import (
    CompactionRecord,
    RecordLike,
    apply_compactions,
    as_records,
)
from langchain_kimi_context.context.compaction.structural import (
    ClearToolResults,
    CollapseCodeBlocks,
    DedupeFileReads,
)
from langchain_kimi_context.context.compaction.trigger import (
    CompactionDecision,
    current_context_tokens,
    should_compact,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.tokens import ContextSizeTracker

__all__ = [
    "CompactionReport",
    "acompact",
    "amaybe_compact",
    "compact",
    "default_compaction",
    "maybe_compact",
]

SummaryModel = Runnable[LanguageModelInput, BaseMessage]
Prepare = Callable[[list[BaseMessage]], Sequence[BaseMessage]]


@dataclass(frozen=True)
class CompactionReport:
    """What a compaction run did (the ``report`` half of the stage signature).

    Attributes:
        changed: Whether the view changed (then ``record`` is set).
        record: The record to store next to the log, or ``None``.
        trigger: Why it ran.
        tokens_before: Tokens of the view before.
        tokens_after: Tokens of the returned view.
        target_tokens: The size the strategies aimed for.
        window: The window used.
        strategy: Strategies that changed something (``"+"``-joined).
        failures: Summariser failures (a failed summary is never stored).
        timed_out: The run exceeded ``policy.compact_timeout_s``; the view is unchanged.
        model_calls: Summariser calls made.
        duration_s: Wall time of the run.
        decision: The trigger decision, when :func:`maybe_compact` ran.
        stage: Always ``"compaction"``.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> _, report = compact([HumanMessage("hi")], ContextPolicy(context_window=50_000))
        >>> report.changed, report.record is None
        (False, True)
    """

    changed: bool
    record: CompactionRecord | None
    trigger: str
    tokens_before: int
    tokens_after: int
    target_tokens: int
    window: int
    strategy: str = ""
    failures: tuple[str, ...] = ()
    timed_out: bool = False
    model_calls: int = 0
    duration_s: float = 0.0
    decision: CompactionDecision | None = None
    stage: str = "compaction"

    @property
    def ratio(self) -> float:
        """``tokens_before / tokens_after`` (1.0 when nothing changed)."""
        return self.tokens_before / self.tokens_after if self.tokens_after else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types (the record via its ``to_dict``).

        Returns:
            A dict that ``json.dumps`` accepts.

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> _, report = compact([HumanMessage("hi")], ContextPolicy(context_window=50_000))
            >>> report.to_dict()["record"] is None, report.to_dict()["stage"]
            (True, 'compaction')
        """
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("record", "decision")
        }
        data["failures"] = list(self.failures)
        data["ratio"] = round(self.ratio, 3)
        data["record"] = self.record.to_dict() if self.record is not None else None
        data["decision"] = (
            None
            if self.decision is None
            else {**dataclasses.asdict(self.decision), "reasons": list(self.decision.reasons)}
        )
        return data


def default_compaction(
    model: SummaryModel | None = None, *, summary_first: bool = False
) -> CompositeCompaction:
    """The default pipeline: structural strategies first, then a summary if a model is given.

    Order: :class:`DedupeFileReads`, :class:`CollapseCodeBlocks`,
    :class:`ClearToolResults`, :class:`LLMCompaction`; each runs only while the view is
    above the target.

    Args:
        model: The summariser, or ``None`` for structural compaction only.
        summary_first: Run the summary before the structural strategies (a price-budget
            compaction: frequent, small, and every fact of the span must reach the
            summariser before a structural edit hides it from later summaries).

    Returns:
        The composite strategy.

    Example:
        >>> default_compaction().name
        'dedupe_file_reads+collapse_code+clear_tool_results'
    """
    strategies: list[Compaction] = [DedupeFileReads(), CollapseCodeBlocks(), ClearToolResults()]
    if model is not None:
        if summary_first:
            strategies.insert(0, LLMCompaction(model))
        else:
            strategies.append(LLMCompaction(model))
    return CompositeCompaction(strategies)


def _budget_target(policy: ContextPolicy, window: int) -> int:
    """Target of a price-budget compaction: the floor the budget assumes."""
    share = int(window * policy.compact_target_share)
    return max(min(policy.compact_budget_floor_tokens, share), 1)


def _setup(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None,
    records: Sequence[RecordLike],
    window: int | None,
    profile: KimiModelProfile | None,
    token_counter: TokenCounterLike | None,
    tools: Sequence[Any] | None,
    target_tokens: int | None,
    trigger: str = "manual",
    prepare: Prepare | None = None,
) -> tuple[CompactionContext, list[BaseMessage], int]:
    policy = policy or ContextPolicy()
    log = tuple(ensure_message_ids(messages))
    resolved = resolve_window(policy, window=window, profile=profile)
    if target_tokens is not None:
        target = target_tokens
    elif trigger == "budget":
        target = _budget_target(policy, resolved)
    else:
        target = int(resolved * policy.compact_target_share)
    ctx = CompactionContext(
        log=log,
        records=tuple(as_records(records)),
        policy=policy,
        token_counter=resolve_token_counter(token_counter),
        window=resolved,
        target_tokens=target,
        tools=tools,
        trigger=trigger,
        prepare=prepare,
    )
    before = apply_compactions(log, ctx.records)
    return ctx, before, ctx.tokens(before)


def _finish(
    ctx: CompactionContext,
    before: list[BaseMessage],
    tokens_before: int,
    draft: CompactionDraft | None,
    *,
    trigger: str,
    snapshot_id: str | None,
    started: float,
    decision: CompactionDecision | None,
) -> tuple[list[BaseMessage], CompactionReport]:
    duration = time.monotonic() - started
    common: dict[str, Any] = {
        "trigger": trigger,
        "tokens_before": tokens_before,
        "target_tokens": ctx.target_tokens,
        "window": ctx.window,
        "duration_s": duration,
        "decision": decision,
    }
    if draft is None:
        report = CompactionReport(
            changed=False, record=None, tokens_after=tokens_before, timed_out=True, **common
        )
        return before, report
    if not draft.changed:
        report = CompactionReport(
            changed=False,
            record=None,
            tokens_after=tokens_before,
            failures=draft.failures,
            model_calls=draft.model_calls,
            **common,
        )
        return before, report
    after = ctx.view(draft)
    tokens_after = ctx.tokens(after)
    strategy = "+".join(draft.strategies)
    record = draft.as_record(
        record_id=CompactionRecord.make_id(
            covered=ctx.log[-1].id if ctx.log else None,
            previous=[r.record_id for r in ctx.records],
            strategy=strategy,
            summary=draft.summary.id if draft.summary is not None else None,
            replaced=sorted(draft.replacements),
        ),
        trigger=trigger,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        ratio=round(tokens_before / max(tokens_after, 1), 3),
        snapshot_id=snapshot_id,
        covered_until_id=ctx.log[-1].id if ctx.log else None,
    )
    report = CompactionReport(
        changed=True,
        record=record,
        tokens_after=tokens_after,
        strategy=strategy,
        failures=draft.failures,
        model_calls=draft.model_calls,
        **common,
    )
    return after, report


def compact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    model: SummaryModel | None = None,
    strategy: Compaction | None = None,
    records: Sequence[RecordLike] = (),
    window: int | None = None,
    profile: KimiModelProfile | None = None,
    token_counter: TokenCounterLike | None = None,
    tools: Sequence[Any] | None = None,
    trigger: str = "manual",
    snapshot_id: str | None = None,
    target_tokens: int | None = None,
    prepare: Prepare | None = None,
) -> tuple[list[BaseMessage], CompactionReport]:
    r"""Compact the view of ``messages`` (the full log) and return ``(view, report)``.

    The log is never modified: ``report.record`` (when the view changed) is the new
    :class:`CompactionRecord` to store next to the log, and ``view`` equals
    ``apply_compactions(messages, [*records, report.record])``.

    Args:
        messages: The full, append-only log (or simply the current history).
        policy: Thresholds (default ``ContextPolicy()``).
        model: Summariser for the default pipeline (``None``: structural only).
        strategy: A custom strategy (default :func:`default_compaction`).
        records: Earlier records of this log (or their ``to_dict()`` forms), oldest first.
        window: The window (default: policy, then profile, then policy default).
        profile: The model profile, for the window.
        token_counter: Counter (default: the package's).
        tools: Tool schemas bound to the model (counted in the view's size).
        trigger: Stored in the record (``"ratio"``, ``"overflow"``, ``"manual"``, ...).
        snapshot_id: Checkpoint id / archive key of the pre-compaction state.
        target_tokens: Stop once the view is at or below this (default
            ``window * policy.compact_target_share``; for ``trigger="budget"``,
            ``policy.compact_budget_floor_tokens`` and the summary runs first).
        prepare: How you turn a view into the messages you send (your pipeline, system
            prompt); the cached-prefix summary request starts with exactly those, so it
            is served from the cache. ``None``: you send the view as it is.

    Returns:
        ``(view, report)``; on timeout or when nothing could be done the view is the
        pre-compaction view and ``report.record`` is ``None``.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> log = [HumanMessage("list", id="h")]
        >>> for i in range(5):
        ...     log += [AIMessage("", id=f"a{i}", tool_calls=[{"name": "ls", "args": {},
        ...             "id": f"c{i}"}]), ToolMessage("f.txt\n" * 500, tool_call_id=f"c{i}",
        ...             id=f"t{i}")]
        >>> view, report = compact(log, ContextPolicy(context_window=4_000), snapshot_id="ck1")
        >>> report.changed, report.record.strategy, report.record.snapshot_id
        (True, 'clear_tool_results', 'ck1')
        >>> view == apply_compactions(log, [report.record])
        True
    """
    started = time.monotonic()
    ctx, before, tokens_before = _setup(
        messages,
        policy,
        records,
        window,
        profile,
        token_counter,
        tools,
        target_tokens,
        trigger,
        prepare,
    )
    runner = strategy or default_compaction(model, summary_first=trigger == "budget")
    run = contextvars.copy_context().run
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kimi-compaction")
    future = executor.submit(run, runner.compact, ctx, CompactionDraft())
    draft: CompactionDraft | None
    try:
        draft = future.result(timeout=ctx.policy.compact_timeout_s)
    except (FutureTimeoutError, CompactionCancelledError):
        ctx.cancelled.set()
        draft = None
    finally:
        executor.shutdown(wait=False)
    return _finish(
        ctx,
        before,
        tokens_before,
        draft,
        trigger=trigger,
        snapshot_id=snapshot_id,
        started=started,
        decision=None,
    )


async def acompact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    model: SummaryModel | None = None,
    strategy: Compaction | None = None,
    records: Sequence[RecordLike] = (),
    window: int | None = None,
    profile: KimiModelProfile | None = None,
    token_counter: TokenCounterLike | None = None,
    tools: Sequence[Any] | None = None,
    trigger: str = "manual",
    snapshot_id: str | None = None,
    target_tokens: int | None = None,
    prepare: Prepare | None = None,
) -> tuple[list[BaseMessage], CompactionReport]:
    """Async variant of :func:`compact` (same arguments, same all-or-nothing result).

    Args:
        messages: The full log.
        policy: Thresholds.
        model: Summariser for the default pipeline.
        strategy: A custom strategy.
        records: Earlier records.
        window: The window.
        profile: The model profile.
        token_counter: Counter.
        tools: Tool schemas bound to the model.
        trigger: Stored in the record.
        snapshot_id: Pre-compaction snapshot id.
        target_tokens: Target size.
        prepare: How the view becomes the sent request (see :func:`compact`).

    Returns:
        ``(view, report)``.

    Example:
        >>> import asyncio
        >>> from langchain_core.messages import HumanMessage
        >>> view, report = asyncio.run(acompact([HumanMessage("hi", id="1")]))
        >>> [m.id for m in view], report.changed
        (['1'], False)
    """
    started = time.monotonic()
    ctx, before, tokens_before = _setup(
        messages,
        policy,
        records,
        window,
        profile,
        token_counter,
        tools,
        target_tokens,
        trigger,
        prepare,
    )
    runner = strategy or default_compaction(model, summary_first=trigger == "budget")
    draft: CompactionDraft | None
    try:
        draft = await asyncio.wait_for(
            runner.acompact(ctx, CompactionDraft()), timeout=ctx.policy.compact_timeout_s
        )
    except (TimeoutError, CompactionCancelledError):
        ctx.cancelled.set()
        draft = None
    return _finish(
        ctx,
        before,
        tokens_before,
        draft,
        trigger=trigger,
        snapshot_id=snapshot_id,
        started=started,
        decision=None,
    )


def _decide(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    records: Sequence[RecordLike],
    window: int | None,
    profile: KimiModelProfile | None,
    token_counter: TokenCounterLike | None,
    tools: Sequence[Any] | None,
    tracker: ContextSizeTracker | None,
) -> tuple[CompactionDecision, list[BaseMessage]]:
    parsed = as_records(records)
    view = apply_compactions(messages, parsed)
    if tracker is not None:
        tokens = tracker.current_size(view, tools)
    else:
        covered = parsed[-1].covered_until_id if parsed else None
        tokens = current_context_tokens(
            view, token_counter=token_counter, tools=tools, usage_valid_after=covered
        )
    resolved = resolve_window(policy, window=window, profile=profile)
    floor = parsed[-1].tokens_after if parsed else None
    return should_compact(tokens, resolved, policy, profile=profile, floor_tokens=floor), view


def _calibrated_target(
    decision: CompactionDecision,
    view: list[BaseMessage],
    policy: ContextPolicy,
    token_counter: TokenCounterLike | None,
    tools: Sequence[Any] | None,
) -> int:
    """The target in local-estimate units: the server's count may differ from ours."""
    if decision.reason == "budget":
        target = _budget_target(policy, decision.window)
    else:
        target = int(decision.window * policy.compact_target_share)
    local = resolve_token_counter(token_counter).count_messages(view, tools)
    if decision.tokens > 0 and local > 0 and local != decision.tokens:
        target = int(target * local / decision.tokens)
    return max(target, 1)


def maybe_compact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    model: SummaryModel | None = None,
    strategy: Compaction | None = None,
    records: Sequence[RecordLike] = (),
    window: int | None = None,
    profile: KimiModelProfile | None = None,
    token_counter: TokenCounterLike | None = None,
    tools: Sequence[Any] | None = None,
    snapshot_id: str | None = None,
    tracker: ContextSizeTracker | None = None,
    prepare: Prepare | None = None,
) -> tuple[list[BaseMessage], CompactionReport | None]:
    """Compact only if the trigger fires (server usage + estimate of what came after).

    The target (``window * policy.compact_target_share``) is scaled by the ratio between
    the local estimate of the view and the trigger's server-based count, so a local
    counter that under- or over-counts still compacts to the intended real size.

    Args:
        messages: The full log.
        policy: Thresholds.
        model: Summariser for the default pipeline.
        strategy: A custom strategy.
        records: Earlier records.
        window: The window.
        profile: The model profile.
        token_counter: Counter.
        tools: Tool schemas bound to the model.
        snapshot_id: Pre-compaction snapshot id.
        tracker: The session's ``ContextSizeTracker`` (last server usage + calibrated
            delta); without it, the newest ``usage_metadata`` in the view is used
            (:func:`current_context_tokens`).
        prepare: How the view becomes the sent request (see :func:`compact`).

    Returns:
        ``(view, report)``; ``report`` is ``None`` when the trigger did not fire.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> view, report = maybe_compact([HumanMessage("hi", id="1")])
        >>> report is None
        True
    """
    policy = policy or ContextPolicy()
    decision, view = _decide(
        messages, policy, records, window, profile, token_counter, tools, tracker
    )
    if not decision:
        return view, None
    view, report = compact(
        messages,
        policy,
        model=model,
        strategy=strategy,
        records=records,
        window=decision.window,
        profile=profile,
        token_counter=token_counter,
        tools=tools,
        trigger=decision.reason or "manual",
        snapshot_id=snapshot_id,
        target_tokens=_calibrated_target(decision, view, policy, token_counter, tools),
        prepare=prepare,
    )
    return view, dataclasses.replace(report, decision=decision)


async def amaybe_compact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    model: SummaryModel | None = None,
    strategy: Compaction | None = None,
    records: Sequence[RecordLike] = (),
    window: int | None = None,
    profile: KimiModelProfile | None = None,
    token_counter: TokenCounterLike | None = None,
    tools: Sequence[Any] | None = None,
    snapshot_id: str | None = None,
    tracker: ContextSizeTracker | None = None,
    prepare: Prepare | None = None,
) -> tuple[list[BaseMessage], CompactionReport | None]:
    """Async variant of :func:`maybe_compact`.

    Args:
        messages: The full log.
        policy: Thresholds.
        model: Summariser for the default pipeline.
        strategy: A custom strategy.
        records: Earlier records.
        window: The window.
        profile: The model profile.
        token_counter: Counter.
        tools: Tool schemas bound to the model.
        snapshot_id: Pre-compaction snapshot id.
        tracker: The session's ``ContextSizeTracker`` (last server usage + calibrated
            delta); without it, the newest ``usage_metadata`` in the view is used
            (:func:`current_context_tokens`).
        prepare: How the view becomes the sent request (see :func:`compact`).

    Returns:
        ``(view, report)``; ``report`` is ``None`` when the trigger did not fire.

    Example:
        >>> import asyncio
        >>> from langchain_core.messages import HumanMessage
        >>> asyncio.run(amaybe_compact([HumanMessage("hi", id="1")]))[1] is None
        True
    """
    policy = policy or ContextPolicy()
    decision, view = _decide(
        messages, policy, records, window, profile, token_counter, tools, tracker
    )
    if not decision:
        return view, None
    view, report = await acompact(
        messages,
        policy,
        model=model,
        strategy=strategy,
        records=records,
        window=decision.window,
        profile=profile,
        token_counter=token_counter,
        tools=tools,
        trigger=decision.reason or "manual",
        snapshot_id=snapshot_id,
        target_tokens=_calibrated_target(decision, view, policy, token_counter, tools),
        prepare=prepare,
    )
    return view, dataclasses.replace(report, decision=decision)
