"""Repair tool-call / tool-result pairing so no request carries an orphan or a gap.

The span of an assistant message with tool calls runs up to the next assistant message.
Each tool result is paired with the NEAREST PRECEDING assistant message that made a call
with its id (never a global id map: some hosts reuse ids across turns), then:

- a result whose call was already answered is a duplicate: dropped (first one wins);
- a result with no preceding call is paired with the nearest FOLLOWING call with its id
  that has no result (a result written before its call), else it is an orphan: dropped;
- results are placed directly after their call, in tool-call order (``moved_results``
  lists those that were elsewhere or out of order);
- other messages found inside a call span (a user message, a system note) end up after
  the results (``moved_messages``);
- a call with no result gets a synthetic error ``ToolMessage`` (``status="error"``,
  marked ``"synthetic_tool_result"``, text saying the result was missing and was inserted
  by transcript repair), in tool-call order;
- an assistant turn that ended in error or abort, i.e. whose
  ``response_metadata["finish_reason"]`` is in ``policy.errored_finish_reasons``
  (default ``{"error", "aborted"}``), gets NO synthetic results: its unanswered calls
  are removed from it instead (the message is dropped if nothing is left), since the
  tools never ran and the model should not read invented failures;
- tool-call ids are never re-keyed;
- user messages left back to back by a drop or a move are merged (as sanitize does), and
  an errored turn left without calls loses its ``reasoning_content`` (as sanitize does
  for turns without calls), so the output needs no second sanitize pass.

The output always satisfies the strict rule "every assistant tool call is followed by
exactly one result per call, and no result is anywhere else". Running it twice changes
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage

from langchain_kimi_context.context._common import (
    PrefixMemo,
    finish_reason,
    is_blank_content,
    message_ref,
)
from langchain_kimi_context.context.markers import with_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import (
    DroppedToolCall,
    PairingReport,
    SyntheticToolResult,
)
from langchain_kimi_context.context.sanitize import (
    _keep_raw_tool_calls,
    merge_adjacent_user_messages,
)
from langchain_kimi_context.context.stage import PipelineStage, StageContext

__all__ = [
    "REPAIR_AFTER_LIMIT_STAGE",
    "REPAIR_PAIRING_STAGE",
    "repair_tool_pairing",
    "synthetic_tool_result",
]


def synthetic_tool_result(call: ToolCall, assistant_ref: str) -> ToolMessage:
    """Build the synthetic error result for a call whose result is missing.

    Args:
        call: The tool call (``id`` and ``name`` are used).
        assistant_ref: Id (or ``"@<i>"``) of the assistant message that made the call.

    Returns:
        A ``ToolMessage`` with ``status="error"`` marked ``"synthetic_tool_result"``.

    Example:
        >>> m = synthetic_tool_result({"id": "c1", "name": "ls", "args": {}}, "a1")
        >>> m.tool_call_id, m.status, m.id
        ('c1', 'error', 'a1:synthetic-result:c1')
        >>> "inserted by transcript repair" in m.content
        True
    """
    call_id = call["id"] or ""
    name = call.get("name") or "unknown"
    text = (
        f"Error: the result of this `{name}` tool call (id {call_id}) is missing from the "
        "conversation transcript; this error result was inserted by transcript repair. "
        "The tool may or may not have run: check before relying on its effects."
    )
    message = ToolMessage(
        text,
        tool_call_id=call_id,
        name=name,
        status="error",
        id=f"{assistant_ref}:synthetic-result:{call_id}",
    )
    return with_marker(
        message, "synthetic_tool_result", tool_call_id=call_id, assistant_id=assistant_ref
    )


_SYNTHETIC: dict[tuple[str, str, str], ToolMessage] = {}


def _synthetic(call: ToolCall, assistant_ref: str) -> ToolMessage:
    """``synthetic_tool_result``, memoised so repeated calls return the same object."""
    key = (assistant_ref, call["id"] or "", call.get("name") or "")
    message = _SYNTHETIC.get(key)
    if message is None:
        if len(_SYNTHETIC) > 10_000:
            _SYNTHETIC.clear()
        message = _SYNTHETIC[key] = synthetic_tool_result(call, assistant_ref)
    return message


# Fold state of the well-paired check per history: appending messages costs O(new).
_PAIRED = PrefixMemo()


def _well_paired(
    messages: Sequence[BaseMessage], errored_reasons: frozenset[str]
) -> list[int] | None:
    """Fast check: every call is directly followed by its results, in call order.

    Returns the positions of errored tool-call turns when the history is well paired,
    else ``None``.
    """
    expected: list[Any] = []
    position = 0
    errored: list[int] = []
    start = 0
    resumed = _PAIRED.get(messages, errored_reasons)
    if resumed is not None:  # the remembered prefix ended well paired, every span closed
        start, saved = resumed
        errored = list(saved)
    for index in range(start, len(messages)):
        message = messages[index]
        cls = type(message)
        if cls is ToolMessage:
            if position >= len(expected) or message.tool_call_id != expected[position]:  # type: ignore[attr-defined]
                return None
            position += 1
            continue
        if position != len(expected):
            return None
        if cls is AIMessage:
            calls = message.tool_calls  # type: ignore[attr-defined]
            if calls:
                expected = [c["id"] for c in calls]
                if message.response_metadata.get("finish_reason") in errored_reasons:
                    errored.append(index)
            else:
                expected = []
            position = 0
        elif isinstance(message, ToolMessage | AIMessage):
            return None  # subclasses: take the general path
        else:
            expected = []
            position = 0
    if position != len(expected):
        return None
    _PAIRED.put(messages, len(messages), errored_reasons, tuple(errored))
    return errored


def repair_tool_pairing(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
) -> tuple[Sequence[BaseMessage], PairingReport]:
    """Fix orphans, duplicates, misplaced and missing tool results (module docstring).

    Args:
        messages: The history (never mutated). Tool-call entries should already be
            valid (``sanitize_messages``); calls without an id are left alone.
        policy: ``errored_finish_reasons``.

    Returns:
        ``(messages, report)``; the very same sequence when nothing needed repair.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> calls = [{"id": "c1", "name": "ls", "args": {}}, {"id": "c2", "name": "ls", "args": {}}]
        >>> history = [
        ...     ToolMessage("stray", tool_call_id="zz", id="orphan"),
        ...     HumanMessage("list", id="u1"),
        ...     AIMessage("", tool_calls=calls, id="a1"),
        ...     HumanMessage("hurry", id="u2"),
        ...     ToolMessage("a.py", tool_call_id="c1", id="t1"),
        ...     ToolMessage("a.py again", tool_call_id="c1", id="t1b"),
        ... ]
        >>> out, report = repair_tool_pairing(history, ContextPolicy())
        >>> [m.id for m in out]
        ['u1', 'a1', 't1', 'a1:synthetic-result:c2', 'u2']
        >>> report.dropped_orphans, report.dropped_duplicates, report.moved_messages
        (('orphan',), ('t1b',), ('u2',))
        >>> repair_tool_pairing(out, ContextPolicy())[0] is out
        True
    """
    clean = _well_paired(messages, policy.errored_finish_reasons)
    if clean is not None:
        return messages, PairingReport(
            errored_turns=tuple(message_ref(messages[i], i) for i in clean)
        )

    # Pass 1: pair every result with the nearest preceding call of its id.
    nearest_call: dict[str, int] = {}
    assigned: dict[int, dict[str, int]] = {}
    span_of: dict[int, int] = {}  # tool/other position -> owner of the span it sits in
    in_span_others: list[tuple[int, int]] = []
    early: list[int] = []
    duplicates: list[int] = []
    call_positions: list[int] = []
    span_owner = -1
    for index, message in enumerate(messages):
        if isinstance(message, AIMessage):
            if message.tool_calls:
                span_owner = index
                call_positions.append(index)
                for call in message.tool_calls:
                    if call["id"]:
                        nearest_call[call["id"]] = index
            else:
                span_owner = -1
        elif isinstance(message, ToolMessage):
            owner = nearest_call.get(message.tool_call_id, -1)
            if owner < 0:
                early.append(index)
                continue
            answered = assigned.setdefault(owner, {})
            if message.tool_call_id in answered:
                duplicates.append(index)
            else:
                answered[message.tool_call_id] = index
                span_of[index] = span_owner
        elif span_owner >= 0:
            in_span_others.append((span_owner, index))

    # Results written before their call: the nearest following unanswered call.
    orphans: list[int] = []
    early_moved: set[int] = set()
    for index in early:
        tool_call_id = messages[index].tool_call_id  # type: ignore[attr-defined]
        for owner in call_positions:
            if owner <= index:
                continue
            answered = assigned.setdefault(owner, {})
            if tool_call_id not in answered and any(
                c["id"] == tool_call_id
                for c in messages[owner].tool_calls  # type: ignore[attr-defined]
            ):
                answered[tool_call_id] = index
                early_moved.add(index)
                break
        else:
            orphans.append(index)

    # Decide per call span: moved results, missing results, errored turns.
    moved_results: list[int] = sorted(early_moved)
    missing: dict[int, list[ToolCall]] = {}
    errored: list[int] = []
    for owner in call_positions:
        ai: AIMessage = messages[owner]  # type: ignore[assignment]
        answered = assigned.get(owner, {})
        last = owner
        unanswered: list[ToolCall] = []
        for call in ai.tool_calls:
            position = answered.get(call["id"] or "", -1)
            if position < 0:
                if call["id"]:
                    unanswered.append(call)
                continue
            if position in early_moved:
                continue
            if span_of.get(position) != owner or position < last:
                moved_results.append(position)
            else:
                last = position
        if finish_reason(ai) in policy.errored_finish_reasons:
            errored.append(owner)
        if unanswered:
            missing[owner] = unanswered
    last_result = {owner: max(ans.values()) for owner, ans in assigned.items() if ans}
    moved_others = [index for owner, index in in_span_others if last_result.get(owner, -1) > index]
    errored_refs = tuple(message_ref(messages[p], p) for p in errored)

    if not (duplicates or orphans or moved_results or missing or moved_others):
        return messages, PairingReport(errored_turns=errored_refs)

    # Pass 2: rebuild.
    errored_set = set(errored)
    out: list[BaseMessage] = []
    synthetic: list[SyntheticToolResult] = []
    stripped: list[DroppedToolCall] = []
    dropped_assistants: list[str] = []
    for index, message in enumerate(messages):
        if isinstance(message, ToolMessage):
            continue
        if index not in assigned and index not in missing:
            out.append(message)
            continue
        assert isinstance(message, AIMessage)  # an assistant message with tool calls
        ai = message
        ref = message_ref(ai, index)
        answered = assigned.get(index, {})
        calls = ai.tool_calls
        if index in errored_set and index in missing:
            lacking = {c["id"] for c in missing[index]}
            for call in missing[index]:
                stripped.append(
                    DroppedToolCall(
                        message_id=ref,
                        tool_call_id=call["id"],
                        name=call["name"],
                        reason="unanswered_in_errored_turn",
                    )
                )
            calls = [c for c in calls if c["id"] not in lacking]
            update: dict[str, Any] = {
                "tool_calls": calls,
                "additional_kwargs": _keep_raw_tool_calls(
                    ai.additional_kwargs, {c["id"] for c in calls if c["id"]}
                ),
            }
            if not calls and is_blank_content(ai.content):
                dropped_assistants.append(ref)
                continue
            if not calls and policy.strip_old_reasoning:
                # Now a turn without calls: sanitize's reasoning rule applies to it.
                kwargs = update["additional_kwargs"]
                if "reasoning_content" in kwargs:
                    update["additional_kwargs"] = {
                        k: v for k, v in kwargs.items() if k != "reasoning_content"
                    }
            ai = ai.model_copy(update=update)
        out.append(ai)
        for call in calls:
            position = answered.get(call["id"] or "", -1)
            if position >= 0:
                out.append(messages[position])
            elif call["id"]:
                result = _synthetic(call, ref)
                out.append(result)
                synthetic.append(
                    SyntheticToolResult(
                        tool_call_id=call["id"], assistant_id=ref, message_id=result.id or ""
                    )
                )

    def refs(positions: Sequence[int]) -> tuple[str, ...]:
        return tuple(message_ref(messages[p], p) for p in sorted(positions))

    # Dropped or moved messages can leave user messages back to back; merge them as
    # sanitize would, so the output is a fixpoint of sanitize and repair alike.
    merged_out, merges = merge_adjacent_user_messages(out, policy)
    return list(merged_out), PairingReport(
        merged_user_messages=merges,
        added_synthetic_results=tuple(synthetic),
        dropped_duplicates=refs(duplicates),
        dropped_orphans=refs(orphans),
        moved_results=refs(moved_results),
        moved_messages=refs(moved_others),
        errored_turns=errored_refs,
        stripped_unanswered_calls=tuple(stripped),
        dropped_empty_assistants=tuple(dropped_assistants),
    )


def _repair_stage(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], PairingReport]:
    """``repair_tool_pairing``: every call answered once, results right after their call."""
    return repair_tool_pairing(messages, ctx.policy)


def _repair_after_limit_stage(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], PairingReport | None]:
    """``repair_tool_pairing`` again when the limit cut something, else nothing to do.

    A cut can orphan tool results; when nothing was cut there is nothing to repair, and
    the stage reports ``None``.
    """
    if not ctx.limit_cut:
        return messages, None
    return repair_tool_pairing(messages, ctx.policy)


REPAIR_PAIRING_STAGE = PipelineStage("repair_pairing", _repair_stage)
"""The ``repair_pairing`` stage (before the turn limit, so a user message typed during a
tool call is moved after the results instead of counting as a turn of its own)."""

REPAIR_AFTER_LIMIT_STAGE = PipelineStage(
    "repair_after_limit", _repair_after_limit_stage, skip_reason="the limit cut nothing"
)
"""The ``repair_after_limit`` stage (after the turn limit)."""
