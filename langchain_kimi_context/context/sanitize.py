"""Sanitize: transcript hygiene so the provider never answers 400.

In one pass over the history:

- tool-call entries that cannot be replayed are dropped: missing/blank id, missing
  arguments, blank name, a name longer than ``policy.max_tool_name_length`` or outside
  ``[A-Za-z0-9_:.-]`` (provider builtins such as ``$web_search`` are exempt), or not in
  ``policy.allowed_tool_names``; LangChain's ``invalid_tool_calls`` (arguments that did
  not parse) are dropped too, since langchain-openai would otherwise send them;
- messages left with nothing readable are dropped (an assistant with no text and no
  calls, a blank user or system message); tool results are never dropped here;
- per-result debug payloads (``policy.debug_payload_keys``) are stripped from tool
  results' ``additional_kwargs``, ``response_metadata`` and dict ``artifact``;
- ``reasoning_content`` is stripped where the provider does not need it: on assistant
  messages without tool calls, and on every assistant message when the model profile
  says the model does not think (thinking models need it on replayed tool-call turns);
- consecutive user messages are merged (newest metadata wins); assistant messages are
  never merged; summaries are never merged;
- a bootstrap user turn (marked ``"bootstrap"``) is inserted after the leading system
  messages when the history would otherwise start with an assistant message.

Every rule depends only on the message itself (and its neighbour for merging), so the
output for a prefix of a history never changes when messages are appended after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)

from langchain_kimi_context.context._common import (
    is_blank_content,
    leading_system_count,
    message_ref,
)
from langchain_kimi_context.context.markers import MARKER_KEY, with_marker
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import (
    DroppedToolCall,
    MergedUserMessages,
    SanitizeReport,
)
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = ["BOOTSTRAP_MESSAGE_ID", "sanitize_messages", "tool_call_problem"]

BOOTSTRAP_MESSAGE_ID = "kimi-context-bootstrap"
"""Id of the bootstrap user turn ``sanitize_messages`` inserts."""

_NAME_RE = re.compile(r"[A-Za-z0-9_:.\-]+")
_REASONING_KEY = "reasoning_content"


def tool_call_problem(call: ToolCall | dict[str, Any], policy: ContextPolicy) -> str | None:
    """Return why a tool-call entry cannot be replayed, or ``None`` when it is valid.

    Args:
        call: A LangChain ``ToolCall`` dict (``id``, ``name``, ``args``).
        policy: Name rules (``max_tool_name_length``, ``allowed_tool_names``,
            ``builtin_tool_names``).

    Returns:
        ``"missing_id"``, ``"missing_args"``, ``"blank_name"``, ``"name_too_long"``,
        ``"bad_name"``, ``"unknown_tool"`` or ``None``.

    Example:
        >>> p = ContextPolicy()
        >>> tool_call_problem({"id": "c1", "name": "read_file", "args": {}}, p) is None
        True
        >>> tool_call_problem({"id": "c1", "name": "read file", "args": {}}, p)
        'bad_name'
        >>> tool_call_problem({"id": "", "name": "f", "args": {}}, p)
        'missing_id'
    """
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id.strip():
        return "missing_id"
    if not isinstance(call.get("args"), dict):
        return "missing_args"
    name = call.get("name")
    if not isinstance(name, str) or not name.strip():
        return "blank_name"
    if name not in policy.builtin_tool_names:
        if len(name) > policy.max_tool_name_length:
            return "name_too_long"
        if not _NAME_RE.fullmatch(name):
            return "bad_name"
    if policy.allowed_tool_names is not None and name not in policy.allowed_tool_names:
        return "unknown_tool"
    return None


def _keep_raw_tool_calls(kwargs: dict[str, Any], kept_ids: set[str]) -> dict[str, Any]:
    """Filter the raw OpenAI ``additional_kwargs["tool_calls"]`` to ``kept_ids``.

    langchain-openai falls back to the raw list when ``tool_calls`` is empty, and
    re-validation (checkpoint load) re-parses it, so it must agree with ``tool_calls``.
    """
    raw = kwargs.get("tool_calls")
    if raw is None:
        return kwargs
    new = dict(kwargs)
    kept = [tc for tc in raw if isinstance(tc, dict) and tc.get("id") in kept_ids]
    if kept:
        new["tool_calls"] = kept
    else:
        del new["tool_calls"]
    return new


def _sanitize_ai(
    message: AIMessage,
    ref: str,
    policy: ContextPolicy,
    keep_reasoning_on_calls: bool,
    dropped_calls: list[DroppedToolCall],
    stripped_reasoning: list[str],
) -> AIMessage:
    tool_calls = message.tool_calls
    invalid = message.invalid_tool_calls
    kept: list[ToolCall] | None = None
    if invalid or tool_calls:
        problems = [tool_call_problem(tc, policy) for tc in tool_calls]
        if invalid or any(problems):
            kept = []
            for tc, problem in zip(tool_calls, problems, strict=True):
                if problem is None:
                    kept.append(tc)
                else:
                    dropped_calls.append(
                        DroppedToolCall(
                            message_id=ref,
                            tool_call_id=tc.get("id"),
                            name=tc.get("name"),
                            reason=problem,
                        )
                    )
            for itc in invalid:
                dropped_calls.append(
                    DroppedToolCall(
                        message_id=ref,
                        tool_call_id=itc.get("id"),
                        name=itc.get("name"),
                        reason="invalid_tool_call",
                    )
                )
    has_calls = bool(tool_calls) if kept is None else bool(kept)
    kwargs = message.additional_kwargs
    strip = (
        policy.strip_old_reasoning
        and _REASONING_KEY in kwargs
        and (not has_calls or not keep_reasoning_on_calls)
    )
    if kept is None and not strip:
        return message
    update: dict[str, Any] = {}
    if kept is not None:
        update["tool_calls"] = kept
        update["invalid_tool_calls"] = []
        kwargs = _keep_raw_tool_calls(kwargs, {tc["id"] for tc in kept if tc["id"]})
    if strip:
        kwargs = {k: v for k, v in kwargs.items() if k != _REASONING_KEY}
        stripped_reasoning.append(ref)
    update["additional_kwargs"] = kwargs
    return message.model_copy(update=update)


def _strip_debug(message: ToolMessage, keys: tuple[str, ...]) -> ToolMessage | None:
    """Return a copy without debug payload keys, or ``None`` when there are none."""
    kwargs = message.additional_kwargs
    meta = message.response_metadata
    artifact = message.artifact
    hit_kwargs = any(k in kwargs for k in keys)
    hit_meta = any(k in meta for k in keys)
    hit_artifact = isinstance(artifact, dict) and any(k in artifact for k in keys)
    if not (hit_kwargs or hit_meta or hit_artifact):
        return None
    update: dict[str, Any] = {}
    if hit_kwargs:
        update["additional_kwargs"] = {k: v for k, v in kwargs.items() if k not in keys}
    if hit_meta:
        update["response_metadata"] = {k: v for k, v in meta.items() if k not in keys}
    if hit_artifact:
        update["artifact"] = {k: v for k, v in artifact.items() if k not in keys}
    return message.model_copy(update=update)


def _mergeable_user(message: BaseMessage) -> bool:
    """Plain user messages (or earlier merges); never summaries or bootstrap turns."""
    if type(message) is not HumanMessage:
        return False
    marker = message.additional_kwargs.get(MARKER_KEY)
    return not isinstance(marker, dict) or marker.get("kind") == "merged_user"


def _as_blocks(content: str | list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _merge_users(run: list[tuple[HumanMessage, str]]) -> tuple[HumanMessage, MergedUserMessages]:
    newest, newest_ref = run[-1]
    contents = [m.content for m, _ in run]
    merged_content: str | list[str | dict[str, Any]]
    if all(isinstance(c, str) for c in contents):
        merged_content = "\n\n".join(c for c in contents if isinstance(c, str))
    else:
        merged_content = [block for c in contents for block in _as_blocks(c)]
    refs: list[str] = []
    for message, ref in run:
        marker = message.additional_kwargs.get(MARKER_KEY)
        earlier = marker.get("merged") if isinstance(marker, dict) else None
        if isinstance(earlier, list) and earlier:
            refs.extend(str(r) for r in earlier)
        else:
            refs.append(ref)
    merged = with_marker(
        newest.model_copy(update={"content": merged_content}), "merged_user", merged=refs
    )
    return merged, MergedUserMessages(into=newest_ref, merged=tuple(refs))


def sanitize_messages(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | None = None,
) -> tuple[Sequence[BaseMessage], SanitizeReport]:
    r"""Clean a history so the provider accepts it (see the module docstring for rules).

    Args:
        messages: The history (never mutated).
        policy: Rules and switches (``allowed_tool_names``, ``max_tool_name_length``,
            ``debug_payload_keys``, ``merge_consecutive_user_messages``,
            ``bootstrap_user_text``, ``strip_old_reasoning``).
        profile: The model profile; when it says ``thinking="off"``,
            ``reasoning_content`` is stripped from tool-call turns too. ``None`` keeps it
            there (the safe choice for thinking models).

    Returns:
        ``(messages, report)``. When nothing changes, the very same sequence is returned.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        >>> history = [
        ...     SystemMessage("be brief", id="s"),
        ...     AIMessage("earlier answer", id="a0"),
        ...     HumanMessage("one", id="u1"),
        ...     HumanMessage("two", id="u2"),
        ...     AIMessage("", id="a1", tool_calls=[{"id": "c1", "name": "bad name", "args": {}}]),
        ... ]
        >>> out, report = sanitize_messages(history, ContextPolicy())
        >>> [m.id for m in out]
        ['s', 'kimi-context-bootstrap', 'a0', 'u2']
        >>> out[3].content
        'one\n\ntwo'
        >>> report.dropped_empty_messages, [d.reason for d in report.dropped_tool_calls]
        (('a1',), ['bad_name'])
        >>> sanitize_messages(out, ContextPolicy())[0] is out
        True
    """
    keep_reasoning_on_calls = profile is None or profile.thinking != "off"
    debug_keys = policy.debug_payload_keys
    merge = policy.merge_consecutive_user_messages
    dropped_calls: list[DroppedToolCall] = []
    dropped_empty: list[str] = []
    stripped_debug: list[str] = []
    merged_reports: list[MergedUserMessages] = []
    stripped_reasoning: list[str] = []
    out: list[BaseMessage] = []
    run: list[tuple[HumanMessage, str]] = []
    changed = False

    def flush() -> None:
        nonlocal changed
        if len(run) == 1:
            out.append(run[0][0])
        elif run:
            merged, rep = _merge_users(run)
            merged_reports.append(rep)
            out.append(merged)
            changed = True
        run.clear()

    for index, message in enumerate(messages):
        new: BaseMessage = message
        if isinstance(message, AIMessage):
            if message.tool_calls or message.invalid_tool_calls or message.additional_kwargs:
                new = _sanitize_ai(
                    message,
                    message_ref(message, index),
                    policy,
                    keep_reasoning_on_calls,
                    dropped_calls,
                    stripped_reasoning,
                )
            if not new.tool_calls and is_blank_content(new.content):  # type: ignore[attr-defined]
                dropped_empty.append(message_ref(message, index))
                changed = True
                continue
        elif isinstance(message, ToolMessage):
            if debug_keys:
                stripped = _strip_debug(message, debug_keys)
                if stripped is not None:
                    new = stripped
                    stripped_debug.append(message_ref(message, index))
        elif isinstance(message, HumanMessage | SystemMessage) and is_blank_content(
            message.content
        ):
            dropped_empty.append(message_ref(message, index))
            changed = True
            continue
        if new is not message:
            changed = True
        if merge and _mergeable_user(new):
            run.append((new, message_ref(message, index)))  # type: ignore[arg-type]
            continue
        flush()
        out.append(new)
    flush()

    bootstrap: str | None = None
    head = leading_system_count(out)
    for message in out[head:]:
        if isinstance(message, ToolMessage):
            continue  # an orphan here is dropped by pairing repair
        if isinstance(message, AIMessage):
            marked = with_marker(
                HumanMessage(policy.bootstrap_user_text, id=BOOTSTRAP_MESSAGE_ID), "bootstrap"
            )
            out.insert(head, marked)
            bootstrap = BOOTSTRAP_MESSAGE_ID
            changed = True
        break

    if not changed:
        return messages, SanitizeReport()
    return out, SanitizeReport(
        dropped_tool_calls=tuple(dropped_calls),
        dropped_empty_messages=tuple(dropped_empty),
        stripped_debug_payloads=tuple(stripped_debug),
        merged_user_messages=tuple(merged_reports),
        bootstrap_added=bootstrap,
        stripped_reasoning=tuple(stripped_reasoning),
    )
