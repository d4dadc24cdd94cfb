"""The compaction service: the one way every face applies, decides and runs compaction.

Contract (pure: no I/O besides calling the strategy and the summary model it is given).
The agent's nodes, :class:`~langchain_kimi_context.middleware.KimiContextMiddleware` and
:class:`~langchain_kimi_context.memory.RollingSnapshotMemory` all go through one
:class:`CompactionService`, so they compact on the same numbers with the same strategy:

* :meth:`CompactionService.view` applies the stored records to the log;
* :meth:`CompactionService.decide` says whether a compaction is due, always on the
  calibrated size of a :class:`~langchain_kimi_context.tokens.ContextSizeTracker`: the
  session's, or one anchored at the newest server usage in the view
  (:meth:`CompactionService.tracker`);
* :meth:`CompactionService.compact` runs the strategy now, :meth:`~CompactionService.
  maybe_compact` only when due, aiming at the calibrated target
  (:func:`~langchain_kimi_context.context.compaction.trigger.compaction_target`); both
  return a :class:`CompactionRun` whose record is kept only when it shrank the view;
* :meth:`CompactionService.recovery` builds the overflow recovery with the same strategy,
  summariser, counter and tools.

The strategy is any object satisfying the
:class:`~langchain_kimi_context.context.compaction.base.Compaction` protocol (the faces'
``compaction=`` parameter); ``None`` is the default pipeline
(:func:`~langchain_kimi_context.context.compaction.engine.default_compaction`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from typing_extensions import Unpack

from langchain_kimi_context.context.compaction._common import (
    TokenCounterLike,
    resolve_token_counter,
    resolve_window,
)
from langchain_kimi_context.context.compaction.base import Compaction
from langchain_kimi_context.context.compaction.engine import (
    CompactionReport,
    CompactOptions,
    Prepare,
    SummaryModel,
    acompact,
    compact,
)
from langchain_kimi_context.context.compaction.records import (
    CompactionRecord,
    RecordLike,
    apply_compactions,
    as_records,
)
from langchain_kimi_context.context.compaction.recovery import OverflowRecovery, TruncateFn
from langchain_kimi_context.context.compaction.savings import savings_ledger
from langchain_kimi_context.context.compaction.trigger import (
    CompactionDecision,
    compaction_target,
    current_context_tokens,
    should_compact,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.profiles import KimiModelProfile
from langchain_kimi_context.tokens import ContextSizeTracker, TokenCounter

__all__ = ["CompactionRun", "CompactionService", "amaybe_compact", "maybe_compact"]


@dataclass(frozen=True)
class CompactionRun:
    """What one compaction through the service did.

    Attributes:
        view: The view after the run (the pre-compaction view when nothing changed).
        report: The engine's report, or ``None`` when the trigger did not fire.
        record: The record to store next to the log: set only when the view changed and
            shrank (a compaction that does not shrink the view only loses detail).
        rejected: Why a changed view was discarded, if it was.
        savings: The session's savings-ledger totals with the new record (compactions,
            tokens removed, cost, money saved so far), when a record was kept and the
            model's prices are known.
    """

    view: list[BaseMessage]
    report: CompactionReport | None
    record: CompactionRecord | None = None
    rejected: str | None = None
    savings: dict[str, Any] | None = None

    @property
    def ran(self) -> bool:
        """Whether a compaction ran (it may still have changed nothing)."""
        return self.report is not None

    def to_dict(self) -> dict[str, Any]:
        """The small report a face stores (plain JSON types).

        Returns:
            ``{"ran": False}`` when not due; else the trigger, strategy, sizes, model
            calls, failures and timeout, plus ``rejected``, or ``record_id`` and
            ``savings`` for a kept record.
        """
        report = self.report
        if report is None:
            return {"ran": False}
        data: dict[str, Any] = {
            "ran": True,
            "changed": report.changed,
            "trigger": report.trigger,
            "strategy": report.strategy,
            "tokens_before": report.tokens_before,
            "tokens_after": report.tokens_after,
            "model_calls": report.model_calls,
            "failures": list(report.failures),
            "timed_out": report.timed_out,
        }
        if self.rejected is not None:
            data["rejected"] = self.rejected
        if self.record is not None:
            data["record_id"] = self.record.record_id
            if self.savings is not None:
                data["savings"] = self.savings
        return data


@dataclass(frozen=True)
class CompactionService:
    """Apply, decide and run compaction for one face and one model (built per use).

    Args:
        policy: Thresholds.
        profile: The model profile, read when the service is built (window, prices for
            the price budget and the savings ledger).
        strategy: The compaction strategy (any :class:`Compaction`); ``None``: the
            default pipeline with ``summary_model``.
        summary_model: The summariser of the default pipeline (``None``: structural).
        token_counter: Counter (default: the package's).
        tools: Tool schemas bound to the model (counted in every size).
        window: An explicit window (default: policy > profile > default).

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> service = CompactionService(ContextPolicy(context_window=8_000))
        >>> log = [HumanMessage("hi", id="h"), AIMessage("ok", id="a", usage_metadata={
        ...     "input_tokens": 7_500, "output_tokens": 2, "total_tokens": 7_502})]
        >>> decision = service.decide(log)
        >>> bool(decision), decision.reason, decision.tokens >= 7_500
        (True, 'reserve', True)
    """

    policy: ContextPolicy
    profile: KimiModelProfile | None = None
    strategy: Compaction | None = None
    summary_model: SummaryModel | None = None
    token_counter: TokenCounterLike | None = None
    tools: Sequence[Any] | None = None
    window: int | None = None

    # ------------------------------------------------------------------ sizes
    def view(
        self, log: Sequence[BaseMessage], records: Sequence[RecordLike] | None = ()
    ) -> list[BaseMessage]:
        """What the model sees of ``log`` after ``records`` (``apply_compactions``).

        Args:
            log: The full, append-only log.
            records: Its compaction records, oldest first.

        Returns:
            The view.
        """
        return apply_compactions(log, records)

    def tracker(
        self, view: Sequence[BaseMessage], records: Sequence[RecordLike] | None = ()
    ) -> ContextSizeTracker | None:
        """A size tracker anchored at the newest server usage of ``view``.

        For faces that keep no tracker of their own: the newest assistant message with
        ``usage_metadata`` after the last record's ``covered_until_id`` anchors it (the
        server's count of the request that produced it), and that count also calibrates
        the local estimate of what came after.

        Args:
            view: The view the model sees.
            records: The compaction records (usage before the last one is stale).

        Returns:
            The tracker (without an anchor when no usage is known), or ``None`` when the
            counter is not a ``TokenCounter`` and cannot be calibrated.
        """
        counter = resolve_token_counter(self.token_counter)
        if not isinstance(counter, TokenCounter):
            return None
        tracker = ContextSizeTracker(counter)
        parsed = as_records(records)
        covered = parsed[-1].covered_until_id if parsed else None
        ids = [m.id for m in view]
        start = ids.index(covered) + 1 if covered in ids else 0
        for index in range(len(view) - 1, start - 1, -1):
            message = view[index]
            if (
                isinstance(message, AIMessage)
                and index
                and tracker.record_response(view[:index], message, tools=self.tools)
            ):
                break
        return tracker

    def size(
        self,
        view: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None = (),
        tracker: ContextSizeTracker | None = None,
    ) -> int:
        """The calibrated size of sending ``view`` now.

        Args:
            view: The messages as the face sends them before its pipeline (its system
                prompt included), so the tracker's anchor matches.
            records: The compaction records.
            tracker: The session's tracker (default: :meth:`tracker` of ``view``).

        Returns:
            Tokens.
        """
        tracker = tracker or self.tracker(view, records)
        if tracker is not None:
            return tracker.current_size(view, self.tools)
        parsed = as_records(records)
        return current_context_tokens(
            view,
            token_counter=self.token_counter,
            tools=self.tools,
            usage_valid_after=parsed[-1].covered_until_id if parsed else None,
        )

    def decide(
        self,
        view: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None = (),
        tracker: ContextSizeTracker | None = None,
    ) -> CompactionDecision:
        """Whether a compaction is due for ``view`` (:func:`should_compact` on its size).

        Args:
            view: The messages as the face sends them before its pipeline.
            records: The compaction records (the newest one's ``tokens_after`` is the
                price budget's floor).
            tracker: The session's tracker (default: :meth:`tracker` of ``view``).

        Returns:
            The decision; ``tokens`` is the calibrated size.
        """
        parsed = as_records(records)
        return self.due(self.size(view, parsed, tracker), parsed)

    def due(self, tokens: int, records: Sequence[RecordLike] | None = ()) -> CompactionDecision:
        """Whether a view of ``tokens`` calibrated tokens is due for compaction.

        Args:
            tokens: The calibrated size (:meth:`size`).
            records: The compaction records (the newest one's ``tokens_after`` is the
                price budget's floor).

        Returns:
            The decision (:func:`should_compact` on the resolved window).
        """
        parsed = as_records(records)
        return should_compact(
            tokens,
            resolve_window(self.policy, window=self.window, profile=self.profile),
            self.policy,
            profile=self.profile,
            floor_tokens=parsed[-1].tokens_after if parsed else None,
        )

    # ------------------------------------------------------------------ running
    def _options(
        self,
        records: Sequence[RecordLike] | None,
        snapshot_id: str | None,
        prepare: Prepare | None,
    ) -> CompactOptions:
        return {
            "snapshot_id": snapshot_id,
            "prepare": prepare,
            "model": self.summary_model,
            "strategy": self.strategy,
            "records": as_records(records),
            "window": self.window,
            "profile": self.profile,
            "token_counter": self.token_counter,
            "tools": self.tools,
        }

    def _run(
        self,
        log: Sequence[BaseMessage],
        options: CompactOptions,
        result: tuple[list[BaseMessage], CompactionReport],
    ) -> CompactionRun:
        view, report = result
        record = report.record
        if record is None:
            return CompactionRun(view, report)
        if report.tokens_after >= report.tokens_before:
            rejected = (
                f"not smaller: {report.tokens_before} -> {report.tokens_after} tokens; "
                "the record was discarded and the view is unchanged"
            )
            before = apply_compactions(log, options.get("records"))
            return CompactionRun(before, report, rejected=rejected)
        savings = None
        if self.profile is not None:
            earlier = as_records(options.get("records"))
            ledger = savings_ledger(log, [*earlier, record], self.profile.pricing)
            savings = {k: v for k, v in ledger.to_dict().items() if k != "entries"}
        return CompactionRun(view, report, record, savings=savings)

    def _due(
        self,
        log: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None,
        tracker: ContextSizeTracker | None,
        head: Sequence[BaseMessage],
    ) -> tuple[list[BaseMessage], dict[str, Any] | None]:
        """The view and, when due, the run's trigger, calibrated target and decision."""
        parsed = as_records(records)
        view = apply_compactions(log, parsed)
        decision = self.decide([*head, *view], parsed, tracker)
        if not decision:
            return view, None
        local = resolve_token_counter(self.token_counter).count_messages(view, self.tools)
        trigger = decision.reason or "manual"
        target = compaction_target(
            self.policy, decision.window, trigger, tokens=decision.tokens, local_tokens=local
        )
        return view, {"trigger": trigger, "target_tokens": target, "decision": decision}

    def compact(
        self,
        log: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None = (),
        *,
        trigger: str = "manual",
        snapshot_id: str | None = None,
        prepare: Prepare | None = None,
        target_tokens: int | None = None,
        decision: CompactionDecision | None = None,
    ) -> CompactionRun:
        """Compact now, all-or-nothing (:func:`~.engine.compact` with the service's inputs).

        Args:
            log: The full log.
            records: Its earlier records.
            trigger: Why it runs (stored in the record).
            snapshot_id: Checkpoint id / archive key of the pre-compaction state.
            prepare: How the face turns a view into the request it sends.
            target_tokens: The size to aim for (default: ``compaction_target``).
            decision: The trigger decision that asked for the run.

        Returns:
            The run.
        """
        options = self._options(records, snapshot_id, prepare)
        result = compact(
            log,
            self.policy,
            trigger=trigger,
            target_tokens=target_tokens,
            decision=decision,
            **options,
        )
        return self._run(log, options, result)

    async def acompact(
        self,
        log: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None = (),
        *,
        trigger: str = "manual",
        snapshot_id: str | None = None,
        prepare: Prepare | None = None,
        target_tokens: int | None = None,
        decision: CompactionDecision | None = None,
    ) -> CompactionRun:
        """Async variant of :meth:`compact` (same arguments)."""
        options = self._options(records, snapshot_id, prepare)
        result = await acompact(
            log,
            self.policy,
            trigger=trigger,
            target_tokens=target_tokens,
            decision=decision,
            **options,
        )
        return self._run(log, options, result)

    def maybe_compact(
        self,
        log: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None = (),
        *,
        tracker: ContextSizeTracker | None = None,
        head: Sequence[BaseMessage] = (),
        snapshot_id: str | None = None,
        prepare: Prepare | None = None,
    ) -> CompactionRun:
        """Compact only when :meth:`decide` says it is due, aiming at the calibrated target.

        Args:
            log: The full log.
            records: Its earlier records.
            tracker: The session's tracker (default: :meth:`tracker` of the view).
            head: Messages the face sends before the view (its system prompt), so the
                size is measured on what the tracker recorded.
            snapshot_id: Checkpoint id / archive key of the pre-compaction state.
            prepare: How the face turns a view into the request it sends.

        Returns:
            The run (``report`` is ``None`` when not due).
        """
        view, due = self._due(log, records, tracker, head)
        if due is None:
            return CompactionRun(view, None)
        return self.compact(log, records, snapshot_id=snapshot_id, prepare=prepare, **due)

    async def amaybe_compact(
        self,
        log: Sequence[BaseMessage],
        records: Sequence[RecordLike] | None = (),
        *,
        tracker: ContextSizeTracker | None = None,
        head: Sequence[BaseMessage] = (),
        snapshot_id: str | None = None,
        prepare: Prepare | None = None,
    ) -> CompactionRun:
        """Async variant of :meth:`maybe_compact` (same arguments)."""
        view, due = self._due(log, records, tracker, head)
        if due is None:
            return CompactionRun(view, None)
        return await self.acompact(log, records, snapshot_id=snapshot_id, prepare=prepare, **due)

    def recovery(
        self,
        *,
        model_name: str | None = None,
        on_window_learned: Callable[[str, int], Any] | None = None,
        preflight: Callable[[list[BaseMessage]], Any] | None = None,
        truncate: TruncateFn | None = None,
    ) -> OverflowRecovery:
        """The overflow recovery around a model call, compacting with this service's inputs.

        Args:
            model_name: The model whose window is learned from the server's error
                (default: the profile's name).
            on_window_learned: Called with ``(model_name, window)`` when one is learned.
            preflight: Called with every view before it is sent.
            truncate: Tool-result truncation (default: the pipeline's).

        Returns:
            The recovery.
        """
        if model_name is None and self.profile is not None:
            model_name = self.profile.name
        return OverflowRecovery(
            self.policy,
            model=self.summary_model,
            strategy=self.strategy,
            model_name=model_name,
            profile=self.profile,
            token_counter=self.token_counter,
            tools=self.tools,
            truncate=truncate,
            on_window_learned=on_window_learned,
            preflight=preflight,
        )


def _legacy(
    policy: ContextPolicy | None, options: CompactOptions
) -> tuple[CompactionService, Sequence[RecordLike], dict[str, Any]]:
    """The service, records and run options behind the functional entry points."""
    service = CompactionService(
        policy or ContextPolicy(),
        options.get("profile"),
        options.get("strategy"),
        options.get("model"),
        options.get("token_counter"),
        options.get("tools"),
        options.get("window"),
    )
    run = {"snapshot_id": options.get("snapshot_id"), "prepare": options.get("prepare")}
    return service, options.get("records", ()), run


def _legacy_result(run: CompactionRun) -> tuple[list[BaseMessage], CompactionReport | None]:
    """``(view, report)``; a rejected run reports no change and no record to store."""
    if run.rejected is None or run.report is None:
        return run.view, run.report
    return run.view, replace(run.report, changed=False, record=None)


def maybe_compact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    tracker: ContextSizeTracker | None = None,
    **options: Unpack[CompactOptions],
) -> tuple[list[BaseMessage], CompactionReport | None]:
    """Compact only if the trigger fires (:meth:`CompactionService.maybe_compact`).

    The target (``window * policy.compact_target_share``) is scaled by the ratio between
    the local estimate of the view and the trigger's server-based count, so a local
    counter that under- or over-counts still compacts to the intended real size.

    Args:
        messages: The full log.
        policy: Thresholds.
        tracker: The session's ``ContextSizeTracker`` (last server usage + calibrated
            delta); without it, one anchored at the newest ``usage_metadata`` in the view
            (:meth:`CompactionService.tracker`).
        **options: :class:`~langchain_kimi_context.context.compaction.engine.CompactOptions`
            (``model``, ``strategy``, ``records``, ``window``, ``profile``,
            ``token_counter``, ``tools``, ``snapshot_id``, ``prepare``).

    Returns:
        ``(view, report)``; ``report`` is ``None`` when the trigger did not fire.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> view, report = maybe_compact([HumanMessage("hi", id="1")])
        >>> report is None
        True
    """
    service, records, run_options = _legacy(policy, options)
    run = service.maybe_compact(messages, records, tracker=tracker, **run_options)
    return _legacy_result(run)


async def amaybe_compact(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy | None = None,
    *,
    tracker: ContextSizeTracker | None = None,
    **options: Unpack[CompactOptions],
) -> tuple[list[BaseMessage], CompactionReport | None]:
    """Async variant of :func:`maybe_compact` (same arguments).

    Example:
        >>> import asyncio
        >>> from langchain_core.messages import HumanMessage
        >>> asyncio.run(amaybe_compact([HumanMessage("hi", id="1")]))[1] is None
        True
    """
    service, records, run_options = _legacy(policy, options)
    run = await service.amaybe_compact(messages, records, tracker=tracker, **run_options)
    return _legacy_result(run)
