"""What each pipeline stage changed, as small JSON-serialisable dataclasses.

Every stage returns ``(messages, report)``; a report is a :class:`StageReport`
(``changed`` and ``to_dict()``), and :class:`PipelineReport` holds them all by stage
name. Reports name messages by id (or ``"@<i>"``, the message's position in that stage's
input, when it has no id) so callers can log them and tests can assert them.
``report.to_dict()`` returns plain JSON types (the agent checkpoints it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

from langchain_kimi_context.errors import KimiContextOverflowError

__all__ = [
    "DroppedToolCall",
    "GuardReport",
    "LimitReport",
    "MergedUserMessages",
    "PairingReport",
    "PipelineReport",
    "RecoveryRoute",
    "RequestTruncationReport",
    "SanitizeReport",
    "StageReport",
    "SyntheticToolResult",
    "TruncatedToolResult",
    "TruncationReport",
]

RecoveryRoute = Literal["none", "compact", "truncate_tool_results", "compact_then_truncate"]
"""What to do when the request does not fit: nothing (it fits), compact the history,
truncate oversized tool results, or compact and then truncate what is still too big."""


@runtime_checkable
class StageReport(Protocol):
    """What a pipeline stage reports: whether it changed anything, and itself as JSON.

    Every stage report here satisfies it; a new stage's report needs nothing more.

    Example:
        >>> isinstance(SanitizeReport(), StageReport), isinstance(object(), StageReport)
        (True, False)
    """

    @property
    def changed(self) -> bool:
        """Whether the stage changed anything."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types (the agent stores it in its state)."""
        ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _ReportMixin:
    """``to_dict`` for every report dataclass."""

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types (nested dicts, lists, str, int, bool).

        Returns:
            A dict that ``json.dumps`` accepts.

        Example:
            >>> SanitizeReport().to_dict()["dropped_empty_messages"]
            []
        """
        result: dict[str, Any] = _jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]
        return result


@dataclass(frozen=True, kw_only=True)
class DroppedToolCall(_ReportMixin):
    """One tool-call entry removed from an assistant message.

    Attributes:
        message_id: The assistant message it was removed from.
        tool_call_id: Its id (``None`` when it had none).
        name: Its tool name (``None`` when it had none).
        reason: Why: ``"missing_id"``, ``"missing_args"``, ``"blank_name"``,
            ``"name_too_long"``, ``"bad_name"``, ``"unknown_tool"``, ``"invalid_tool_call"``
            (LangChain could not parse it), ``"duplicate_id"`` (repeats an id of the same
            message) or ``"unanswered_in_errored_turn"``.

    Example:
        >>> d = DroppedToolCall(message_id="m1", tool_call_id=None, name="x", reason="missing_id")
        >>> d.to_dict()["reason"]
        'missing_id'
    """

    message_id: str
    tool_call_id: str | None
    name: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class MergedUserMessages(_ReportMixin):
    """Consecutive user messages merged into one.

    Attributes:
        into: Id of the merged message (the newest one's id: newest metadata wins).
        merged: Ids of all the messages merged, oldest first.

    Example:
        >>> MergedUserMessages(into="u2", merged=("u1", "u2")).to_dict()
        {'into': 'u2', 'merged': ['u1', 'u2']}
    """

    into: str
    merged: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SyntheticToolResult(_ReportMixin):
    """A synthetic error result inserted for a tool call that had none.

    Attributes:
        tool_call_id: The call it answers.
        assistant_id: The assistant message that made the call.
        message_id: Id of the inserted ``ToolMessage``.

    Example:
        >>> SyntheticToolResult(tool_call_id="c1", assistant_id="a1", message_id="s").tool_call_id
        'c1'
    """

    tool_call_id: str
    assistant_id: str
    message_id: str


@dataclass(frozen=True, kw_only=True)
class TruncatedToolResult(_ReportMixin):
    """One tool result that was truncated.

    Attributes:
        message_id: The tool message.
        tool_call_id: The call it answers.
        original_chars: Characters of text before.
        kept_chars: Characters of the original text kept (markers not counted).
        removed_chars: ``original_chars - kept_chars``.
        mode: ``"head"`` (suffix marker) or ``"head_tail"`` (marker in the middle).
        reason: ``"per_result_cap"`` or ``"budget"`` (several results over the budget).

    Example:
        >>> TruncatedToolResult(message_id="t", tool_call_id="c", original_chars=10,
        ...     kept_chars=4, removed_chars=6, mode="head", reason="per_result_cap").removed_chars
        6
    """

    message_id: str
    tool_call_id: str
    original_chars: int
    kept_chars: int
    removed_chars: int
    mode: Literal["head", "head_tail"]
    reason: Literal["per_result_cap", "budget"]


@dataclass(frozen=True, kw_only=True)
class GuardReport(_ReportMixin):
    """The preflight guard's verdict: the window, where it came from, and the estimate.

    Attributes:
        window: The resolved context window in tokens.
        window_source: Where it came from: ``"policy.context_window"``,
            ``"profile:<model> (<profile source>)"``, ``"learned"``, ``"default"``, or
            ``"policy.agent_context_cap"`` when the cap lowered it.
        uncapped_window: The window before ``agent_context_cap``.
        uncapped_source: Its source.
        minimum: The hard minimum that applied.
        warn: Whether the window is below ``policy.warn_below_context_window``.
        warning: The warning text, when ``warn``.
        message_tokens: Estimated tokens of all messages (system included).
        system_tokens: The part of ``message_tokens`` in system messages.
        tool_schema_tokens: Estimated tokens of the tool schemas.
        reserved_output_tokens: Tokens kept free for the reply.
        estimated_tokens: ``message_tokens + tool_schema_tokens``.
        required_tokens: ``estimated_tokens + reserved_output_tokens``.
        fits: Whether ``required_tokens <= window``.
        overflow_tokens: ``max(0, required_tokens - window)``.
        tool_result_tokens: Estimated tokens in tool results (computed only when the
            request does not fit; 0 otherwise, to keep the hot path O(new messages)).
        reducible_tool_result_tokens: Tokens truncation could free (tool-result text above
            ``policy.tool_result_min_keep_chars`` per result, not already truncated;
            computed only when the request does not fit).
        route: The recovery route when it does not fit (``"none"`` when it does).
        tool_loop_limit: ``policy.tool_loop_overflow_share`` x window, in tokens.
        exceeds_tool_loop_limit: Whether ``required_tokens`` is past it: during a tool
            loop the caller should stop and recover (``overflow_error()`` builds the
            error to raise).

    Example:
        >>> from langchain_kimi_context.context.guard import resolve_context_window
        >>> from langchain_kimi_context import ContextPolicy
        >>> resolve_context_window(ContextPolicy(context_window=100_000)).source
        'policy.context_window'
    """

    window: int
    window_source: str
    uncapped_window: int
    uncapped_source: str
    minimum: int
    warn: bool
    warning: str | None = None
    message_tokens: int = 0
    system_tokens: int = 0
    tool_schema_tokens: int = 0
    reserved_output_tokens: int = 0
    estimated_tokens: int = 0
    required_tokens: int = 0
    fits: bool = True
    overflow_tokens: int = 0
    tool_result_tokens: int = 0
    reducible_tool_result_tokens: int = 0
    route: RecoveryRoute = "none"
    tool_loop_limit: int = 0
    exceeds_tool_loop_limit: bool = False

    def overflow_error(self, model: str | None = None) -> KimiContextOverflowError:
        """Build the typed overflow error for this estimate (for the caller to raise).

        Args:
            model: The model id, for the message.

        Returns:
            A ``KimiContextOverflowError`` naming the window, the tokens required and
            the recovery route.

        Example:
            >>> r = GuardReport(window=20_000, window_source="default", uncapped_window=20_000,
            ...                 uncapped_source="default", minimum=16_000, warn=True,
            ...                 required_tokens=25_000, fits=False, route="compact")
            >>> err = r.overflow_error("kimi-k2.6")
            >>> err.window, err.requested
            (20000, 25000)
        """
        return KimiContextOverflowError(
            f"The request needs about {self.required_tokens} tokens (reply reserve "
            f"included) but the context window is {self.window} tokens (from "
            f"{self.window_source}). Recovery route: {self.route}.",
            window=self.window,
            requested=self.required_tokens,
            model=model,
        )


@dataclass(frozen=True, kw_only=True)
class SanitizeReport(_ReportMixin):
    """What ``sanitize_messages`` changed.

    Attributes:
        dropped_tool_calls: Invalid tool-call entries removed (with the reason).
        dropped_empty_messages: Messages dropped because nothing readable was left.
        stripped_debug_payloads: Tool results whose debug payload keys were removed.
        merged_user_messages: Runs of consecutive user messages merged.
        bootstrap_added: Id of the bootstrap user turn inserted, or ``None``.
        stripped_reasoning: Assistant messages whose ``reasoning_content`` was removed.
        normalized_content: Tool-call messages whose blank list content became ``""``.
        dropped_malformed: Stored records that were not messages and could not be
            converted (``"@<index>: <reason>"``).
        replaced_unencodable: Messages whose unencodable characters (lone UTF-16
            surrogates) became U+FFFD (``"<message>: <count>"``).

    Example:
        >>> SanitizeReport().changed
        False
    """

    dropped_tool_calls: tuple[DroppedToolCall, ...] = ()
    dropped_empty_messages: tuple[str, ...] = ()
    stripped_debug_payloads: tuple[str, ...] = ()
    merged_user_messages: tuple[MergedUserMessages, ...] = ()
    bootstrap_added: str | None = None
    stripped_reasoning: tuple[str, ...] = ()
    normalized_content: tuple[str, ...] = ()
    dropped_malformed: tuple[str, ...] = ()
    replaced_unencodable: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the stage changed anything."""
        return bool(
            self.replaced_unencodable
            or self.normalized_content
            or self.dropped_malformed
            or self.dropped_tool_calls
            or self.dropped_empty_messages
            or self.stripped_debug_payloads
            or self.merged_user_messages
            or self.bootstrap_added
            or self.stripped_reasoning
        )


@dataclass(frozen=True, kw_only=True)
class LimitReport(_ReportMixin):
    """What ``limit_history_turns`` did.

    Attributes:
        limit: The user-turn limit N that applied (``None`` = unlimited).
        limit_source: Where N came from (``"argument"``, ``"policy.history_limit"``,
            ``"policy.dm_user_history_limits[<user>]"``, ``"policy.dm_history_limit"``,
            ``"policy.channel_history_limit"``, ``"none"``).
        session_kind: The kind parsed from the session key (``None`` without a key).
        hysteresis: K: the history is cut back to N turns only once N + K are exceeded.
        user_turns_before: User turns in the input (summaries/bootstrap not counted).
        user_turns_kept: User turns in the output.
        dropped_messages: Messages removed, in input order.

    Example:
        >>> LimitReport(limit=None, limit_source="none").cut
        False
    """

    limit: int | None
    limit_source: str
    session_kind: str | None = None
    hysteresis: int = 0
    user_turns_before: int = 0
    user_turns_kept: int = 0
    dropped_messages: tuple[str, ...] = ()

    @property
    def cut(self) -> bool:
        """Whether this call cut the history (an explicit prefix-changing event)."""
        return bool(self.dropped_messages)

    @property
    def changed(self) -> bool:
        """Whether the stage changed anything."""
        return self.cut


@dataclass(frozen=True, kw_only=True)
class PairingReport(_ReportMixin):
    """What ``repair_tool_pairing`` changed.

    Attributes:
        added_synthetic_results: Synthetic error results inserted for missing ones.
        dropped_duplicates: Tool results dropped as duplicates of an answered call.
        dropped_orphans: Tool results with no matching call, dropped.
        moved_results: Tool results moved to directly follow their call (in call order).
        moved_messages: Other messages found inside a call span, moved after the results.
        errored_turns: Assistant tool-call turns that ended in error/abort (no synthetic
            results were added for them).
        stripped_unanswered_calls: Unanswered calls removed from errored turns.
        dropped_empty_assistants: Errored assistant turns left with no content and no
            calls, dropped.
        merged_user_messages: User messages a drop or move left back to back, merged.

    Example:
        >>> PairingReport().changed
        False
    """

    added_synthetic_results: tuple[SyntheticToolResult, ...] = ()
    dropped_duplicates: tuple[str, ...] = ()
    dropped_orphans: tuple[str, ...] = ()
    moved_results: tuple[str, ...] = ()
    moved_messages: tuple[str, ...] = ()
    errored_turns: tuple[str, ...] = ()
    stripped_unanswered_calls: tuple[DroppedToolCall, ...] = ()
    dropped_empty_assistants: tuple[str, ...] = ()
    merged_user_messages: tuple[MergedUserMessages, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the stage changed anything."""
        return bool(
            self.merged_user_messages
            or self.added_synthetic_results
            or self.dropped_duplicates
            or self.dropped_orphans
            or self.moved_results
            or self.moved_messages
            or self.stripped_unanswered_calls
            or self.dropped_empty_assistants
        )


@dataclass(frozen=True, kw_only=True)
class TruncationReport(_ReportMixin):
    """What ``truncate_tool_results`` changed.

    Attributes:
        per_result_cap_chars: The per-result cap that applied.
        budget_chars: The budget for all tool results together (``None`` = no budget).
        truncated: The results truncated, in message order.
        skipped_already_truncated: Over-cap results left alone because they were
            truncated before (truncation is idempotent).

    Example:
        >>> TruncationReport(per_result_cap_chars=40_000).removed_chars
        0
    """

    per_result_cap_chars: int
    budget_chars: int | None = None
    truncated: tuple[TruncatedToolResult, ...] = ()
    skipped_already_truncated: tuple[str, ...] = ()

    @property
    def removed_chars(self) -> int:
        """Characters removed in total."""
        return sum(t.removed_chars for t in self.truncated)

    @property
    def changed(self) -> bool:
        """Whether the stage changed anything."""
        return bool(self.truncated)


@dataclass(frozen=True, kw_only=True)
class RequestTruncationReport(_ReportMixin):
    """What ``truncate_for_request`` decided and did: the last stage of the pipeline.

    Attributes:
        mode: ``policy.tool_result_truncation`` (``"auto"``, ``"always"`` or ``"never"``).
        route: The recovery route of the estimate taken before truncating.
        applied: Whether truncation ran: ``mode == "always"``, or ``"auto"`` with the
            route ``"truncate_tool_results"``.
        truncation: What truncation changed (``None`` when it did not run).
        guard: The estimate of the final messages (taken again after a truncation that
            changed something).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_kimi_context.context.guard import resolve_context_window
        >>> from langchain_kimi_context.context.policy import ContextPolicy
        >>> from langchain_kimi_context.context.truncation import truncate_for_request
        >>> policy = ContextPolicy()
        >>> _, r = truncate_for_request([HumanMessage("hi")], policy,
        ...                             resolve_context_window(policy))
        >>> r.applied, r.route, r.changed, r.guard.fits
        (False, 'none', False, True)
    """

    mode: Literal["auto", "always", "never"]
    route: RecoveryRoute
    applied: bool
    truncation: TruncationReport | None
    guard: GuardReport

    @property
    def changed(self) -> bool:
        """Whether the stage changed anything."""
        return self.truncation is not None and self.truncation.changed


_LEGACY_NAMES: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "pairing": ("repair_pairing", None),
        "limit": ("limit_turns", None),
        "pairing_after_limit": ("repair_after_limit", None),
        "guard": ("truncate_results", "guard"),
        "truncation": ("truncate_results", "truncation"),
    }
)
"""The names the combined report had before it was keyed by stage (fixed, never extended).

Each maps to ``(stage name, attribute of that stage's report or None for the report
itself)``; they keep ``report.pairing`` and ``to_dict()["pairing"]`` working. A stage
added since is read, and serialised, under its own name.
"""


def _as_dict(report: Any) -> Any:
    return None if report is None else report.to_dict()


@dataclass(frozen=True, kw_only=True)
class PipelineReport(Mapping[str, "StageReport | None"]):
    """The combined report of ``prepare_context``: each stage's report, by stage name.

    A read-only mapping in pipeline order: ``report["sanitize"]``, ``"limit_turns" in
    report``, ``dict(report)``; ``None`` for a stage that had nothing to do. Every stage
    is also an attribute (``report.sanitize``; a stage named like a mapping method is read
    with ``report[name]``). The names from before the report was keyed by stage still
    work: ``guard`` (the estimate of the final request, from ``truncate_results``),
    ``pairing``, ``limit``, ``pairing_after_limit`` and ``truncation`` (``None`` when
    truncation did not run).

    Attributes:
        stages: ``{stage name: report or None}``, in pipeline order.
        input_messages: Messages in.
        output_messages: Messages out.
        changed: Whether the output differs from the input.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> from langchain_kimi_context import ContextPolicy, prepare_context
        >>> out, report = prepare_context([HumanMessage("hi")], ContextPolicy())
        >>> list(report)[:2]
        ['sanitize', 'repair_pairing']
        >>> report.changed, report["limit_turns"].cut, report.to_dict()["guard"]["fits"]
        (False, False, True)
    """

    stages: Mapping[str, StageReport | None] = dataclasses.field(hash=False)
    input_messages: int
    output_messages: int
    changed: bool

    def __getitem__(self, name: str) -> StageReport | None:
        return self.stages[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __getattr__(self, name: str) -> Any:
        # only called when ordinary lookup fails: a stage name or a name from before
        stages = self.__dict__.get("stages")
        if name.startswith("_") or stages is None:
            raise AttributeError(name)
        return self._lookup(stages, name)

    def _lookup(self, stages: Mapping[str, StageReport | None], name: str) -> Any:
        if name in stages:
            return stages[name]
        stage, attribute = _LEGACY_NAMES.get(name, ("", None))
        if stage not in stages:
            raise AttributeError(
                f"{type(self).__name__} has no stage {name!r} (stages: {', '.join(stages)})"
            )
        report = stages[stage]
        return report if attribute is None or report is None else getattr(report, attribute)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types.

        Each stage's report is stored under its name, or under the names from before the
        report was keyed by stage (``guard``, ``sanitize``, ``pairing``, ``limit``,
        ``pairing_after_limit``, ``truncation``) for the stages that had them.

        Returns:
            A dict that ``json.dumps`` accepts.
        """
        data: dict[str, Any] = {}
        for name in self.stages:
            legacy = [key for key, (stage, _) in _LEGACY_NAMES.items() if stage == name]
            for key in legacy or [name]:
                data[key] = _as_dict(self._lookup(self.stages, key))
        data.update(
            input_messages=self.input_messages,
            output_messages=self.output_messages,
            changed=self.changed,
        )
        return data
