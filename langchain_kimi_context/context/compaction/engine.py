"""Running a compaction: ``compact`` / ``acompact`` and the report.

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
from typing import Any, TypedDict

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from typing_extensions import Unpack

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
    compaction_target,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = [
    "CompactOptions",
    "CompactionReport",
    "acompact",
    "amaybe_compact",  # noqa: F822 (module __getattr__: defined in the compaction service)
    "compact",
    "default_compaction",
    "maybe_compact",  # noqa: F822
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
        decision: The trigger decision, when the run was asked for by the trigger.
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


@dataclass
class _Run:
    """One compaction run: its inputs, the view before it, and its strategy."""

    ctx: CompactionContext
    before: list[BaseMessage]
    tokens_before: int
    runner: Compaction
    snapshot_id: str | None
    started: float

    def finish(
        self, draft: CompactionDraft | None, decision: CompactionDecision | None = None
    ) -> tuple[list[BaseMessage], CompactionReport]:
        """``(view, report)`` for the draft (``None``: timed out or abandoned)."""
        ctx, tokens_before = self.ctx, self.tokens_before
        common: dict[str, Any] = {
            "trigger": ctx.trigger,
            "tokens_before": tokens_before,
            "target_tokens": ctx.target_tokens,
            "window": ctx.window,
            "duration_s": time.monotonic() - self.started,
            "decision": decision,
        }
        if draft is None:
            report = CompactionReport(
                changed=False, record=None, tokens_after=tokens_before, timed_out=True, **common
            )
            return self.before, report
        if not draft.changed:
            report = CompactionReport(
                changed=False,
                record=None,
                tokens_after=tokens_before,
                failures=draft.failures,
                model_calls=draft.model_calls,
                **common,
            )
            return self.before, report
        after = ctx.view(draft)
        tokens_after = ctx.tokens(after)
        strategy = "+".join(draft.strategies)
        covered = ctx.log[-1].id if ctx.log else None
        record = draft.as_record(
            record_id=CompactionRecord.make_id(
                covered=covered,
                previous=[r.record_id for r in ctx.records],
                strategy=strategy,
                summary=draft.summary.id if draft.summary is not None else None,
                replaced=sorted(draft.replacements),
            ),
            trigger=ctx.trigger,
            tokens_before=tokens_before,
            tokens_after=tokens_after,
            ratio=round(tokens_before / max(tokens_after, 1), 3),
            snapshot_id=self.snapshot_id,
            covered_until_id=covered,
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


class CompactOptions(TypedDict, total=False):
    """The inputs every compaction entry point takes (``compact``, ``maybe_compact``, ...).

    Attributes:
        model: Summariser for the default pipeline (``None``: structural only).
        strategy: A custom strategy (default :func:`default_compaction`).
        records: Earlier records of this log (or their ``to_dict()`` forms), oldest first.
        window: The window (default: policy, then profile, then policy default).
        profile: The model profile, for the window (and the price budget).
        token_counter: Counter (default: the package's).
        tools: Tool schemas bound to the model (counted in the view's size).
        snapshot_id: Checkpoint id / archive key of the pre-compaction state.
        prepare: How you turn a view into the messages you send (your pipeline, system
            prompt); the cached-prefix summary request starts with exactly those, so it
            is served from the cache. ``None``: you send the view as it is.
    """

    model: SummaryModel | None
    strategy: Compaction | None
    records: Sequence[RecordLike]
    window: int | None
    profile: KimiModelProfile | None
    token_counter: TokenCounterLike | None
    tools: Sequence[Any] | None
    snapshot_id: str | None
    prepare: Prepare | None


def _setup(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None,
    trigger: str,
    target_tokens: int | None,
    decision: CompactionDecision | None,
    options: CompactOptions,
) -> _Run:
    """Resolve the inputs of :func:`compact` / :func:`acompact`."""
    policy = policy or ContextPolicy()
    log = tuple(ensure_message_ids(messages))
    window = resolve_window(policy, window=options.get("window"), profile=options.get("profile"))
    ctx = CompactionContext(
        log=log,
        records=tuple(as_records(options.get("records"))),
        policy=policy,
        token_counter=resolve_token_counter(options.get("token_counter")),
        window=window,
        target_tokens=(
            compaction_target(policy, window, trigger) if target_tokens is None else target_tokens
        ),
        tools=options.get("tools"),
        trigger=trigger,
        prepare=options.get("prepare"),
        decision=decision,
    )
    before = apply_compactions(log, ctx.records)
    runner = options.get("strategy") or default_compaction(
        options.get("model"), summary_first=trigger == "budget"
    )
    snapshot_id = options.get("snapshot_id")
    return _Run(ctx, before, ctx.tokens(before), runner, snapshot_id, time.monotonic())


def compact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    trigger: str = "manual",
    target_tokens: int | None = None,
    decision: CompactionDecision | None = None,
    **options: Unpack[CompactOptions],
) -> tuple[list[BaseMessage], CompactionReport]:
    r"""Compact the view of ``messages`` (the full log) and return ``(view, report)``.

    The log is never modified: ``report.record`` (when the view changed) is the new
    :class:`CompactionRecord` to store next to the log, and ``view`` equals
    ``apply_compactions(messages, [*records, report.record])``.

    Args:
        messages: The full, append-only log (or simply the current history).
        policy: Thresholds (default ``ContextPolicy()``).
        trigger: Stored in the record (``"ratio"``, ``"overflow"``, ``"manual"``, ...).
        target_tokens: Stop once the view is at or below this (default
            :func:`~langchain_kimi_context.context.compaction.trigger.compaction_target`:
            ``window * policy.compact_target_share``; for ``trigger="budget"``,
            ``policy.compact_budget_floor_tokens`` and the summary runs first).
        decision: The trigger decision that asked for this run (kept in the report).
        **options: :class:`CompactOptions` (``model``, ``strategy``, ``records``,
            ``window``, ``profile``, ``token_counter``, ``tools``, ``snapshot_id``,
            ``prepare``).

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
    run = _setup(messages, policy, trigger, target_tokens, decision, options)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kimi-compaction")
    future = executor.submit(
        contextvars.copy_context().run, run.runner.compact, run.ctx, CompactionDraft()
    )
    draft: CompactionDraft | None
    try:
        draft = future.result(timeout=run.ctx.policy.compact_timeout_s)
    except (FutureTimeoutError, CompactionCancelledError):
        run.ctx.cancelled.set()
        draft = None
    finally:
        executor.shutdown(wait=False)
    return run.finish(draft, decision)


async def acompact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    trigger: str = "manual",
    target_tokens: int | None = None,
    decision: CompactionDecision | None = None,
    **options: Unpack[CompactOptions],
) -> tuple[list[BaseMessage], CompactionReport]:
    """Async variant of :func:`compact` (same arguments, same all-or-nothing result).

    Example:
        >>> import asyncio
        >>> from langchain_core.messages import HumanMessage
        >>> view, report = asyncio.run(acompact([HumanMessage("hi", id="1")]))
        >>> [m.id for m in view], report.changed
        (['1'], False)
    """
    run = _setup(messages, policy, trigger, target_tokens, decision, options)
    draft: CompactionDraft | None
    try:
        pending = run.runner.acompact(run.ctx, CompactionDraft())
        draft = await asyncio.wait_for(pending, timeout=run.ctx.policy.compact_timeout_s)
    except (TimeoutError, CompactionCancelledError):
        run.ctx.cancelled.set()
        draft = None
    return run.finish(draft, decision)


def __getattr__(name: str) -> Any:
    # maybe_compact / amaybe_compact moved to the compaction service; this path still works
    if name in ("maybe_compact", "amaybe_compact"):
        from langchain_kimi_context.context.compaction import service

        return getattr(service, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
