"""Overflow recovery: never surface a raw "too long" 400.

On a ``ContextOverflowError`` from the model call (the server's 400, or a preflight
"does not fit" raised by the guard) :class:`OverflowRecovery` runs, in this exact order:

1. learn the real window when the error names it (``exceeded model token limit: 32768``)
   so the same overflow does not happen twice (:func:`learn_context_window`);
2. compact, up to ``policy.overflow_compact_attempts`` times, each attempt more
   aggressive (fewer turns kept, a lower target), calling the model after each;
3. truncate oversized tool results, ``policy.overflow_truncate_attempts`` times (the
   pipeline's ``truncate_tool_results``), calling the model after it;
4. raise a readable :class:`~langchain_kimi_context.errors.KimiContextOverflowError`
   telling the user to start a new session or use a larger-window model.

It takes the model call as a function, so the agent, the middleware and the memory API
share this one implementation (sync :meth:`OverflowRecovery.invoke` and async
:meth:`OverflowRecovery.ainvoke`). Every change is returned as a
:class:`CompactionRecord`, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import BaseMessage

from langchain_kimi_context.context.compaction._common import (
    TokenCounterLike,
    ensure_message_ids,
    resolve_token_counter,
    resolve_window,
)
from langchain_kimi_context.context.compaction.base import Compaction
from langchain_kimi_context.context.compaction.engine import (
    CompactionReport,
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
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import GuardReport
from langchain_kimi_context.context.truncation import truncate_tool_results
from langchain_kimi_context.errors import (
    KimiContextOverflowError,
    from_openai_error,
    parse_context_overflow,
)
from langchain_kimi_context.profiles import (
    KimiModelProfile,
    forget_learned_windows,
    get_profile,
    learn_context_window,
    learned_context_window,
    list_profiles,
)

__all__ = [
    "OverflowRecovery",
    "RecoveryOutcome",
    "TruncateFn",
    "ensure_fits",
    "forget_learned_windows",
    "learn_context_window",
    "learned_context_window",
    "window_from_error",
]

T = TypeVar("T")
TruncateFn = Callable[[list[BaseMessage], ContextPolicy], tuple[Sequence[BaseMessage], Any]]
"""``(messages, policy) -> (messages, report)``: tool-result truncation (default: the
pipeline's :func:`~langchain_kimi_context.context.truncation.truncate_tool_results` with
the recovery's window)."""


def window_from_error(exc: BaseException) -> int | None:
    """Return the window an overflow error names (``exceeded model token limit: N``).

    Args:
        exc: The error.

    Returns:
        The window, or ``None`` when the error does not say.

    Example:
        >>> window_from_error(KimiContextOverflowError("too long", window=32768))
        32768
        >>> window_from_error(ValueError("Your request exceeded model token limit: 8192"))
        8192
    """
    window = getattr(exc, "window", None)
    if isinstance(window, int) and window > 0:
        return window
    return parse_context_overflow(str(exc))[1]


def ensure_fits(report: GuardReport, *, model: str | None = None) -> None:
    """Raise the overflow error for a preflight "does not fit" verdict of the guard.

    Use it in the ``preflight`` of :class:`OverflowRecovery` (or in the call function) so
    a request that cannot fit is recovered from before it is sent.

    Args:
        report: The :func:`~langchain_kimi_context.context.guard.preflight_guard` report.
        model: The model id, for the message.

    Raises:
        KimiContextOverflowError: When ``report.fits`` is false (with ``window`` and
            ``requested`` set from the estimate).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_kimi_context.context.guard import preflight_guard
        >>> _, report = preflight_guard([HumanMessage("hi " * 60_000)],
        ...     ContextPolicy(context_window=40_000))
        >>> ensure_fits(report)
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiContextOverflowError: Preflight: ...
    """
    if report.fits:
        return
    message = (
        f"Preflight: the request needs about {report.required_tokens:,} tokens "
        f"(including {report.reserved_output_tokens:,} reserved for the reply) but the "
        f"context window is {report.window:,} ({report.window_source})."
    )
    raise KimiContextOverflowError(
        message, window=report.window, requested=report.required_tokens, model=model
    )


def _call(view: list[BaseMessage]) -> Generator[_Op, Any, tuple[bool, Any]]:
    """One model call in the recovery flow.

    Returns ``(True, result)``, or ``(False, overflow error)`` when the provider said the
    request is too long; any other error propagates.
    """
    try:
        return True, (yield _Call(view))
    except Exception as exc:
        overflow = _as_overflow(exc)
        if overflow is None:
            raise
        return False, overflow


def _as_overflow(exc: BaseException) -> ContextOverflowError | None:
    if isinstance(exc, ContextOverflowError):
        return exc
    translated = from_openai_error(exc)
    return translated if isinstance(translated, ContextOverflowError) else None


@dataclass(frozen=True)
class RecoveryOutcome(Generic[T]):
    """The result of a call made through :class:`OverflowRecovery`.

    Attributes:
        result: What the call returned.
        messages: The view that was finally sent.
        records: New compaction/truncation records to store next to the log.
        steps: What happened, in order (``"call"``, ``"overflow"``, ``"compact#1"``, ...).
        learned_window: The window learned from the server, if one was.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> out = OverflowRecovery().invoke(lambda m: len(m), [HumanMessage("hi")])
        >>> out.result, out.steps, out.records
        (1, ('call',), ())
    """

    result: T
    messages: list[BaseMessage]
    records: tuple[CompactionRecord, ...] = ()
    steps: tuple[str, ...] = ()
    learned_window: int | None = None


@dataclass
class _Call:
    view: list[BaseMessage]


@dataclass
class _Compact:
    kwargs: dict[str, Any] = field(default_factory=dict)


_Op = _Call | _Compact


@dataclass
class _Done:
    outcome: RecoveryOutcome[Any]


def _resume(
    flow: Generator[_Op, Any, RecoveryOutcome[Any]], value: Any, error: Exception | None
) -> _Op | _Done:
    """Send the step's result (or throw its error) into the flow; ``_Done`` at its end."""
    try:
        return flow.throw(error) if error is not None else flow.send(value)
    except StopIteration as stop:
        return _Done(stop.value)


class OverflowRecovery:
    """Call a model with the overflow-recovery chain around it (sync and async).

    Args:
        policy: Thresholds (``overflow_compact_attempts``, ``overflow_truncate_attempts``,
            compaction settings).
        model: The summariser used by the compaction steps (``None``: structural only).
        strategy: A custom compaction strategy instead of the default pipeline.
        model_name: The model whose window is learned from the server's error.
        profile: Its profile (for the window when the error names none).
        token_counter: Counter (default: the package's).
        tools: Tool schemas bound to the model (counted in the view's size).
        truncate: Tool-result truncation ``(messages, policy) -> (messages, report)``
            (default: the pipeline's ``truncate_tool_results``).
        on_window_learned: Called with ``(model_name, window)`` when the server named a
            smaller window (e.g. ``lambda m, w: chat.learn_context_window(w, model=m)``).
        preflight: Called with every view before it is sent; raise an overflow error
            there (e.g. :func:`ensure_fits` on the guard's report) to recover before the
            server has to refuse the request.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> def call(messages):
        ...     raise KimiContextOverflowError("exceeded model token limit: 32768")
        >>> OverflowRecovery(truncate=lambda m, p: (m, None)).invoke(
        ...     call, [HumanMessage("hi")])
        Traceback (most recent call last):
        ...
        langchain_kimi_context.errors.KimiContextOverflowError: The conversation no longer ...
    """

    def __init__(
        self,
        policy: ContextPolicy | None = None,
        *,
        model: SummaryModel | None = None,
        strategy: Compaction | None = None,
        model_name: str | None = None,
        profile: KimiModelProfile | None = None,
        token_counter: TokenCounterLike | None = None,
        tools: Sequence[Any] | None = None,
        truncate: TruncateFn | None = None,
        on_window_learned: Callable[[str, int], Any] | None = None,
        preflight: Callable[[list[BaseMessage]], Any] | None = None,
    ) -> None:
        self.policy = policy or ContextPolicy()
        self.model = model
        self.strategy = strategy
        self.model_name = model_name
        self.profile = profile
        self.token_counter = resolve_token_counter(token_counter)
        self.tools = tools
        self.truncate = truncate
        self.on_window_learned = on_window_learned
        self.preflight = preflight

    # ------------------------------------------------------------------ helpers
    def _check(self, view: list[BaseMessage]) -> None:
        if self.preflight is not None:
            self.preflight(view)

    def _window(self, learned: int | None) -> int:
        profile = self.profile
        if self.model_name is not None and profile is None:
            profile = get_profile(self.model_name)
        base = resolve_window(self.policy, profile=profile)
        return min(base, learned) if learned else base

    def _learn(self, exc: BaseException) -> int | None:
        window = window_from_error(exc)
        if window is None:
            return None
        if self.model_name is not None:
            learn_context_window(self.model_name, window)
            if self.on_window_learned is not None:
                self.on_window_learned(self.model_name, window)
        return window

    def _compact_kwargs(
        self,
        log: list[BaseMessage],
        records: list[CompactionRecord],
        attempt: int,
        window: int,
        snapshot_id: str | None,
        requested: int | None,
    ) -> dict[str, Any]:
        policy = self.policy.replace(
            compact_keep_turns=max(1, self.policy.compact_keep_turns - (attempt - 1))
        )
        usable = max(window - self.policy.reserved_output_tokens, window // 2)
        target = min(usable, window * policy.compact_target_share)
        view = apply_compactions(log, records)
        local = self.token_counter.count_messages(view, self.tools)
        if requested and local and requested > local:
            # the server counts more than our estimate: aim in our units
            target = target * local / requested
        # an overflow always asks for progress, more with every attempt
        target = min(target, local * 0.75) / 2 ** (attempt - 1)
        return {
            "messages": log,
            "policy": policy,
            "model": self.model,
            "strategy": self.strategy,
            "records": list(records),
            "window": window,
            "profile": self.profile,
            "token_counter": self.token_counter,
            "tools": self.tools,
            "trigger": "overflow",
            "snapshot_id": snapshot_id,
            "target_tokens": max(int(target), 1),
        }

    def _truncation_record(
        self,
        view: list[BaseMessage],
        window: int,
        snapshot_id: str | None,
        records: list[CompactionRecord],
    ) -> CompactionRecord | None:
        policy = self.policy.replace(context_window=window)
        if self.truncate is not None:
            new_view, _ = self.truncate(list(view), policy)
        else:
            new_view, _ = truncate_tool_results(view, policy, window=window)
        by_id = {m.id: m for m in view if m.id}
        edits = {
            m.id: m
            for m in new_view
            if m.id and m.id in by_id and m is not by_id[m.id] and m != by_id[m.id]
        }
        if not edits:
            return None
        before = self.token_counter.count_messages(view, self.tools)
        after = self.token_counter.count_messages(
            [edits.get(m.id or "", m) for m in view], self.tools
        )
        return CompactionRecord(
            record_id=CompactionRecord.make_id(
                truncate=sorted(edits), previous=[r.record_id for r in records]
            ),
            trigger="overflow",
            strategy="truncate_tool_results",
            tokens_before=before,
            tokens_after=after,
            ratio=round(before / max(after, 1), 3),
            snapshot_id=snapshot_id,
            replacements=edits,
            covered_until_id=view[-1].id if view else None,
        )

    def _final_error(
        self,
        last: ContextOverflowError,
        window: int,
        steps: Sequence[str],
        view: list[BaseMessage],
    ) -> KimiContextOverflowError:
        requested = getattr(last, "requested", None)
        tokens = self.token_counter.count_messages(view, self.tools)
        needs = f"; the request needs about {requested or tokens:,}" if requested or tokens else ""
        who = self.model_name or "the model"
        message = (
            f"The conversation no longer fits the context window of {who} ({window:,} tokens"
            f"{needs}). Automatic recovery tried {_describe_steps(steps)}, and it still does "
            f"not fit. Start a new session (e.g. a new thread_id){_larger_model(window)}. "
            "Nothing was lost: the full history is still in the session log."
        )
        return KimiContextOverflowError(
            message, window=window, requested=requested or tokens, model=self.model_name
        )

    # ------------------------------------------------------------------ the chain
    def _flow(
        self,
        messages: Sequence[BaseMessage],
        records: Sequence[RecordLike],
        snapshot_id: str | None,
    ) -> Generator[_Op, Any, RecoveryOutcome[Any]]:
        log = ensure_message_ids(messages)
        all_records = as_records(records)
        new: list[CompactionRecord] = []
        steps: list[str] = ["call"]
        view = apply_compactions(log, all_records)
        learned: int | None = None

        def outcome(result: Any) -> RecoveryOutcome[Any]:
            return RecoveryOutcome(result, view, tuple(new), tuple(steps), learned)

        ok, value = yield from _call(view)
        if ok:
            return outcome(value)
        last = value
        steps.append("overflow")
        learned = self._learn(last) or learned
        for attempt in range(1, self.policy.overflow_compact_attempts + 1):
            window = self._window(learned)
            requested = getattr(last, "requested", None)
            kwargs = self._compact_kwargs(log, all_records, attempt, window, snapshot_id, requested)
            result: tuple[list[BaseMessage], CompactionReport] = yield _Compact(kwargs)
            new_view, report = result
            if report.record is None:
                why = "timed out" if report.timed_out else "no progress"
                steps.append(f"compact#{attempt}:{why}")
                break
            steps.append(f"compact#{attempt}")
            all_records.append(report.record)
            new.append(report.record)
            view = new_view
            steps.append("call")
            ok, value = yield from _call(view)
            if ok:
                return outcome(value)
            last = value
            steps.append("overflow")
            learned = self._learn(last) or learned
        for attempt in range(1, self.policy.overflow_truncate_attempts + 1):
            window = self._window(learned)
            record = self._truncation_record(view, window, snapshot_id, all_records)
            if record is None:
                steps.append(f"truncate#{attempt}:no progress")
                break
            steps.append(f"truncate#{attempt}")
            all_records.append(record)
            new.append(record)
            view = apply_compactions(log, all_records)
            steps.append("call")
            ok, value = yield from _call(view)
            if ok:
                return outcome(value)
            last = value
            steps.append("overflow")
            learned = self._learn(last) or learned
        steps.append("give_up")
        error = self._final_error(last, self._window(learned), steps, view)
        error.recovery_steps = tuple(steps)  # type: ignore[attr-defined]
        error.recovery_records = tuple(new)  # type: ignore[attr-defined]
        raise error from last

    def invoke(
        self,
        call: Callable[[list[BaseMessage]], T],
        messages: Sequence[BaseMessage],
        *,
        records: Sequence[RecordLike] = (),
        snapshot_id: str | None = None,
    ) -> RecoveryOutcome[T]:
        """Call ``call(view)``; on overflow run the recovery chain.

        Args:
            call: The model call, given the view (the messages to send).
            messages: The full log.
            records: Its earlier compaction records.
            snapshot_id: Checkpoint id / archive key of the pre-recovery state.

        Returns:
            The outcome (the call's result plus the records to store).

        Raises:
            KimiContextOverflowError: When every step failed (readable, with
                ``recovery_steps`` and ``recovery_records`` attributes).

        Example:
            >>> from langchain_core.messages import HumanMessage
            >>> OverflowRecovery().invoke(lambda m: "ok", [HumanMessage("hi")]).result
            'ok'
        """
        flow = self._flow(messages, records, snapshot_id)
        op: _Op | _Done = next(flow)
        while not isinstance(op, _Done):
            value: Any = None
            try:
                if isinstance(op, _Compact):
                    value = compact(**op.kwargs)
                else:
                    self._check(op.view)
                    value = call(op.view)
            except Exception as exc:
                op = _resume(flow, None, exc)
            else:
                op = _resume(flow, value, None)
        return op.outcome

    async def ainvoke(
        self,
        call: Callable[[list[BaseMessage]], Awaitable[T]],
        messages: Sequence[BaseMessage],
        *,
        records: Sequence[RecordLike] = (),
        snapshot_id: str | None = None,
    ) -> RecoveryOutcome[T]:
        """Async variant of :meth:`invoke` (``call`` is a coroutine function).

        Args:
            call: The async model call, given the view.
            messages: The full log.
            records: Its earlier compaction records.
            snapshot_id: Checkpoint id / archive key of the pre-recovery state.

        Returns:
            The outcome.

        Raises:
            KimiContextOverflowError: When every step failed.

        Example:
            >>> import asyncio
            >>> from langchain_core.messages import HumanMessage
            >>> async def call(m):
            ...     return "ok"
            >>> asyncio.run(OverflowRecovery().ainvoke(call, [HumanMessage("hi")])).result
            'ok'
        """
        flow = self._flow(messages, records, snapshot_id)
        op: _Op | _Done = next(flow)
        while not isinstance(op, _Done):
            value: Any = None
            try:
                if isinstance(op, _Compact):
                    value = await acompact(**op.kwargs)
                else:
                    self._check(op.view)
                    value = await call(op.view)
            except Exception as exc:
                op = _resume(flow, None, exc)
            else:
                op = _resume(flow, value, None)
        return op.outcome


def _describe_steps(steps: Sequence[str]) -> str:
    """What the recovery chain did, in words (``compaction #1 (no progress)``...)."""
    names = {"compact": "compaction", "truncate": "tool-result truncation"}
    parts = []
    for step in steps:
        kind, _, rest = step.partition("#")
        if kind not in names:
            continue
        number, _, why = rest.partition(":")
        parts.append(f"{names[kind]} #{number} ({why or 'applied'})")
    calls = steps.count("call")
    done = ", ".join(parts) if parts else "nothing (no compaction or truncation could help)"
    return f"{done}, with {calls} model call(s) refused as too long"


def _larger_model(window: int) -> str:
    """A hint naming a registered model with a larger window, if one exists."""
    best = max(
        (get_profile(name) for name in list_profiles()),
        key=lambda p: p.context_window,
        default=None,
    )
    if best is None or best.context_window <= window:
        return (
            f"; no known Kimi model has a larger window than {window:,} tokens, so "
            "shorten what the conversation carries (large pastes, tool results)"
        )
    return f" or use a model with a larger context window (e.g. {best.name}, " + (
        f"{best.context_window:,} tokens)"
    )
