"""Sanitize: transcript hygiene so the provider never answers 400.

In one pass over the history:

- stored records that are not messages are converted (``convert_to_messages``) or,
  when malformed, dropped and reported (never failing the whole history);
- tool-call entries that cannot be replayed are dropped: missing/blank id, missing
  arguments, blank name, a name longer than ``policy.max_tool_name_length`` or outside
  ``[A-Za-z0-9_:.-]`` (provider builtins such as ``$web_search`` are exempt), or not in
  ``policy.allowed_tool_names``, or repeating an id of the same message; LangChain's
  ``invalid_tool_calls`` (arguments that did
  not parse) are dropped too, since langchain-openai would otherwise send them;
- a blank list content on a tool-call message becomes ``""`` (Kimi rejects an empty
  text part);
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
  messages when the history would otherwise start with an assistant message;
- text that cannot be encoded as UTF-8 (lone UTF-16 surrogates, e.g. from a cut emoji)
  is repaired: a valid surrogate pair becomes its character, a lone surrogate U+FFFD,
  and the message is reported (``replaced_unencodable``); never a raw
  ``UnicodeEncodeError`` at send time, never a silent ``?``.

Every rule depends only on the message itself (and its neighbour for merging), so the
output for a prefix of a history never changes when messages are appended after it.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    MessageLikeRepresentation,
    RemoveMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    convert_to_messages,
)

from langchain_kimi_context.context._common import (
    PrefixMemo,
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
from langchain_kimi_context.context.stage import PipelineStage, StageContext
from langchain_kimi_context.profiles import KimiModelProfile

__all__ = [
    "BOOTSTRAP_MESSAGE_ID",
    "SANITIZE_STAGE",
    "merge_adjacent_user_messages",
    "sanitize_messages",
    "tool_call_problem",
]

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


_RawDrop = tuple[Any, Any, str]  # (tool_call_id, name, reason)
# (new message, dropped calls, reasoning stripped, blank content normalised)
_AIVerdict = tuple[AIMessage, tuple[_RawDrop, ...], bool, bool]

# Identity memo of assistant-message verdicts: messages are immutable values (as in
# LangChain/LangGraph), so the verdict for the same object, with the same content /
# additional_kwargs / tool_calls objects and the same policy, is the same. Returning the
# same copy every call keeps downstream identity-based fast paths (the token counter's
# incremental prefix) hot. Entries die with their message (weak reference).
_AI_MEMO: dict[int, tuple[Any, ...]] = {}
_AI_MEMO_MAX = 200_000


def _evict(ref: weakref.ref[AIMessage], *, memo: dict[int, tuple[Any, ...]], key: int) -> None:
    entry = memo.get(key)
    if entry is not None and entry[0] is ref:
        del memo[key]


_RULES: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _rules_key(policy: ContextPolicy, keep_reasoning_on_calls: bool) -> tuple[Any, ...]:
    """The policy fields an assistant verdict depends on, interned (compared with ``is``)."""
    rules = (
        policy.allowed_tool_names,
        policy.builtin_tool_names,
        policy.max_tool_name_length,
        policy.strip_old_reasoning,
        keep_reasoning_on_calls,
    )
    interned = _RULES.get(rules)
    if interned is None:
        if len(_RULES) > 1_000:
            _RULES.clear()
        interned = _RULES[rules] = rules
    return interned


def _sanitize_ai(
    message: AIMessage,
    policy: ContextPolicy,
    rules: tuple[Any, ...],
    keep_reasoning_on_calls: bool,
    names: dict[str, str | None],
) -> _AIVerdict:
    key = id(message)
    kwargs = message.additional_kwargs
    tool_calls = message.tool_calls
    entry = _AI_MEMO.get(key)
    if (
        entry is not None
        and entry[0]() is message
        and entry[1] is kwargs
        and entry[2] is tool_calls
        and entry[3] is rules
        and entry[4] is message.content
    ):
        verdict: _AIVerdict = entry[5]
        return verdict
    verdict = _sanitize_ai_uncached(message, policy, keep_reasoning_on_calls, names)
    if len(_AI_MEMO) >= _AI_MEMO_MAX:
        _AI_MEMO.clear()
    ref = weakref.ref(message, functools.partial(_evict, memo=_AI_MEMO, key=key))
    _AI_MEMO[key] = (
        ref,
        kwargs,
        tool_calls,
        rules,
        message.content,
        verdict,
    )
    return verdict


def _sanitize_ai_uncached(
    message: AIMessage,
    policy: ContextPolicy,
    keep_reasoning_on_calls: bool,
    names: dict[str, str | None],
) -> _AIVerdict:
    tool_calls = message.tool_calls
    invalid = message.invalid_tool_calls
    kept: list[ToolCall] | None = None
    drops: list[_RawDrop] = []
    if invalid or tool_calls:
        problems = [_call_problem(tc, policy, names) for tc in tool_calls]
        if len(tool_calls) > 1:
            seen: set[str] = set()
            for position, tc in enumerate(tool_calls):
                if problems[position] is None:
                    if tc["id"] in seen:
                        problems[position] = "duplicate_id"
                    seen.add(tc["id"] or "")
        if invalid or any(problems):
            kept = []
            for tc, problem in zip(tool_calls, problems, strict=True):
                if problem is None:
                    kept.append(tc)
                else:
                    drops.append((tc.get("id"), tc.get("name"), problem))
            for itc in invalid:
                drops.append((itc.get("id"), itc.get("name"), "invalid_tool_call"))
    has_calls = bool(tool_calls) if kept is None else bool(kept)
    kwargs = message.additional_kwargs
    strip = bool(
        policy.strip_old_reasoning
        and _REASONING_KEY in kwargs
        and (not has_calls or not keep_reasoning_on_calls)
    )
    content = message.content
    normalize = has_calls and isinstance(content, list) and content and is_blank_content(content)
    if kept is None and not strip and not normalize:
        return message, (), False, False
    update: dict[str, Any] = {}
    if kept is not None:
        update["tool_calls"] = kept
        update["invalid_tool_calls"] = []
        kwargs = _keep_raw_tool_calls(kwargs, {tc["id"] for tc in kept if tc["id"]})
    if strip:
        kwargs = {k: v for k, v in kwargs.items() if k != _REASONING_KEY}
    if normalize:
        # A blank text part on a tool-call message is rejected by Kimi; reasoning blocks
        # move to ``reasoning_content`` (where thinking models need it) when absent there.
        reasoning = "".join(
            str(block.get("reasoning") or block.get("thinking") or "")
            for block in content
            if isinstance(block, dict) and block.get("type") in ("reasoning", "thinking")
        )
        if reasoning and _REASONING_KEY not in kwargs and not strip:
            kwargs = {**kwargs, _REASONING_KEY: reasoning}
        update["content"] = ""
    update["additional_kwargs"] = kwargs
    return message.model_copy(update=update), tuple(drops), strip, bool(normalize)


def _call_problem(
    call: ToolCall, policy: ContextPolicy, names: dict[str, str | None]
) -> str | None:
    """``tool_call_problem`` with the name verdict memoised for this call."""
    call_id = call.get("id")
    if type(call_id) is not str or not call_id or call_id.isspace():
        return "missing_id"
    if type(call.get("args")) is not dict:
        return tool_call_problem(call, policy)
    name = call.get("name")
    if type(name) is not str:
        return "blank_name"
    try:
        return names[name]
    except KeyError:
        verdict = names[name] = tool_call_problem(call, policy)
        return verdict


def _strip_debug(message: ToolMessage, keys: frozenset[str]) -> ToolMessage | None:
    """Return a copy without debug payload keys, or ``None`` when there are none."""
    kwargs = message.additional_kwargs
    meta = message.response_metadata
    artifact = message.artifact
    hit_kwargs = bool(kwargs) and not keys.isdisjoint(kwargs)
    hit_meta = bool(meta) and not keys.isdisjoint(meta)
    hit_artifact = isinstance(artifact, dict) and not keys.isdisjoint(artifact)
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


# Fold state at the end of the last input per history: appending messages costs O(new).
_MEMO = PrefixMemo()

_MESSAGE_TYPES = frozenset({AIMessage, HumanMessage, SystemMessage, ToolMessage})


_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_unencodable(text: str) -> tuple[str, int]:
    r"""Repair text that UTF-8 cannot encode: surrogate pairs joined, lone ones U+FFFD.

    Args:
        text: Any string.

    Returns:
        ``(text, replaced)``: the repaired text (the same object when nothing was
        wrong) and the number of U+FFFD characters put in.
    """
    if not _SURROGATE.search(text):
        return text, 0
    fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return fixed, fixed.count("\ufffd") - text.count("\ufffd")


def replace_unencodable_message(message: BaseMessage) -> tuple[BaseMessage, int]:
    r"""A copy of ``message`` with its text repaired by :func:`replace_unencodable`.

    Args:
        message: Any message (string or list content; text blocks are repaired).

    Returns:
        ``(message, replaced)``; the same message when nothing was wrong.
    """
    content = message.content
    total = 0
    new_content: Any
    if isinstance(content, str):
        new_content, total = replace_unencodable(content)
    else:
        new_content = []
        for part in content:
            if isinstance(part, str):
                part, n = replace_unencodable(part)
                total += n
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                text, n = replace_unencodable(part["text"])
                if n or text is not part["text"]:
                    part = {**part, "text": text}
                total += n
            new_content.append(part)
        if new_content == content:
            new_content = content
    if new_content is content:
        return message, 0
    return message.model_copy(update={"content": new_content}), total


def _convert_record(item: Any) -> BaseMessage | str:
    """Convert a stored record to a message, or return why it is malformed."""
    if isinstance(item, RemoveMessage):
        return "RemoveMessage is an instruction, not a message"
    try:
        converted = convert_to_messages([item])
    except Exception as exc:  # LangChain raises ValueError/NotImplementedError/TypeError
        return f"malformed record ({type(item).__name__}): {str(exc)[:120]}"
    return converted[0]


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


def _merge_users(run: list[tuple[HumanMessage, int]]) -> tuple[HumanMessage, MergedUserMessages]:
    newest, newest_index = run[-1]
    newest_ref = message_ref(newest, newest_index)
    contents = [m.content for m, _ in run]
    merged_content: str | list[str | dict[str, Any]]
    if all(isinstance(c, str) for c in contents):
        merged_content = "\n\n".join(c for c in contents if isinstance(c, str))
    else:
        merged_content = [block for c in contents for block in _as_blocks(c)]
    refs: list[str] = []
    for message, index in run:
        ref = message_ref(message, index)
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


def _emit_run(
    run: list[tuple[HumanMessage, int]],
    append: Callable[[BaseMessage], None],
    merged_reports: list[MergedUserMessages],
) -> bool:
    """Emit a run of consecutive user messages: one as it is, several merged into one.

    Returns:
        Whether the run was merged (the history changed).
    """
    if len(run) == 1:
        append(run[0][0])
        return False
    merged, rep = _merge_users(run)
    merged_reports.append(rep)
    append(merged)
    return True


def merge_adjacent_user_messages(
    messages: Sequence[BaseMessage], policy: ContextPolicy
) -> tuple[Sequence[BaseMessage], tuple[MergedUserMessages, ...]]:
    r"""Only the merge rule of ``sanitize_messages`` (used after pairing repair drops).

    Args:
        messages: A sanitized history.
        policy: ``merge_consecutive_user_messages``.

    Returns:
        ``(messages, merges)``; the very same sequence when no user messages are adjacent.

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> out, merges = merge_adjacent_user_messages(
        ...     [HumanMessage("a", id="1"), HumanMessage("b", id="2")], ContextPolicy())
        >>> out[0].content, merges[0].merged
        ('a\n\nb', ('1', '2'))
    """
    if not policy.merge_consecutive_user_messages:
        return messages, ()
    previous = False
    for message in messages:
        current = _mergeable_user(message)
        if current and previous:
            break
        previous = current
    else:
        return messages, ()
    out: list[BaseMessage] = []
    merges: list[MergedUserMessages] = []
    run: list[tuple[HumanMessage, int]] = []
    padded: list[BaseMessage | None] = [*messages, None]
    for index, item in enumerate(padded):
        if item is not None and _mergeable_user(item):
            run.append((item, index))  # type: ignore[arg-type]
            continue
        if len(run) > 1:
            merged, report = _merge_users(run)
            out.append(merged)
            merges.append(report)
        elif run:
            out.append(run[0][0])
        run = []
        if item is not None:
            out.append(item)
    return out, tuple(merges)


def sanitize_messages(
    messages: Sequence[MessageLikeRepresentation],
    policy: ContextPolicy,
    *,
    profile: KimiModelProfile | None = None,
) -> tuple[Sequence[BaseMessage], SanitizeReport]:
    r"""Clean a history so the provider accepts it (see the module docstring for rules).

    Args:
        messages: The history (never mutated). Entries that are not messages are
            converted when LangChain can (``convert_to_messages``), else dropped and
            reported: one malformed record never fails the whole history.
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
    debug_keys = frozenset(policy.debug_payload_keys)
    merge = policy.merge_consecutive_user_messages
    names: dict[str, str | None] = {}
    rules = _rules_key(policy, keep_reasoning_on_calls)
    memo_key = (rules, debug_keys, merge)
    resumed = _MEMO.get(messages, memo_key)
    start = 0
    lists: tuple[list[Any], ...]
    if resumed is None:
        out: list[BaseMessage] = []
        lists = ([], [], [], [], [], [], [], [])
        changed = False
    else:
        start, (saved_out, saved_lists, changed) = resumed
        out = list(saved_out)
        lists = tuple(list(entries) for entries in saved_lists)
    (
        dropped_calls,
        dropped_empty,
        stripped_debug,
        merged_reports,
        stripped_reasoning,
        normalized_content,
        dropped_malformed,
        replaced_unencodable,
    ) = lists
    append = out.append
    run: list[tuple[HumanMessage, int]] = []
    run_state: tuple[int, int, tuple[int, ...], bool] = (0, 0, (), False)

    for index in range(start, len(messages)):
        item = messages[index]
        cls = type(item)
        if cls not in _MESSAGE_TYPES and (
            not isinstance(item, BaseMessage) or isinstance(item, RemoveMessage)
        ):
            converted = _convert_record(item)
            changed = True
            if isinstance(converted, str):
                dropped_malformed.append(f"@{index}: {converted}")
                continue
            item, cls = converted, type(converted)
        message: BaseMessage = item  # type: ignore[assignment]
        fixed, replaced = replace_unencodable_message(message)
        if fixed is not message:
            changed = True
            if replaced:
                replaced_unencodable.append(f"{message_ref(message, index)}: {replaced}")
            message = fixed
        new: BaseMessage = message
        if cls is ToolMessage or (cls is not HumanMessage and isinstance(message, ToolMessage)):
            if debug_keys and (
                message.additional_kwargs
                or message.response_metadata
                or type(message.artifact) is dict  # type: ignore[attr-defined]
            ):
                stripped = _strip_debug(message, debug_keys)  # type: ignore[arg-type]
                if stripped is not None:
                    new = stripped
                    stripped_debug.append(message_ref(message, index))
                    changed = True
        elif cls is AIMessage or (cls is not HumanMessage and isinstance(message, AIMessage)):
            ai: AIMessage = message  # type: ignore[assignment]
            if ai.tool_calls or ai.invalid_tool_calls or ai.additional_kwargs:
                new, drops, reasoning, normalized = _sanitize_ai(
                    ai, policy, rules, keep_reasoning_on_calls, names
                )
                if new is not message:
                    changed = True
                    ref = message_ref(message, index)
                    if normalized:
                        normalized_content.append(ref)
                    for call_id, name, reason in drops:
                        dropped_calls.append(
                            DroppedToolCall(
                                message_id=ref, tool_call_id=call_id, name=name, reason=reason
                            )
                        )
                    if reasoning:
                        stripped_reasoning.append(ref)
            if not new.tool_calls and is_blank_content(new.content):  # type: ignore[attr-defined]
                dropped_empty.append(message_ref(message, index))
                changed = True
                continue
        elif isinstance(message, HumanMessage | SystemMessage) and is_blank_content(
            message.content
        ):
            dropped_empty.append(message_ref(message, index))
            changed = True
            continue
        if merge and cls is HumanMessage and _mergeable_user(message):
            if not run:  # where to resume if the history ends inside this run
                run_state = (index, len(out), tuple(map(len, lists)), changed)
            run.append((message, index))  # type: ignore[arg-type]
            continue
        if run:
            changed = _emit_run(run, append, merged_reports) or changed
            run = []
        append(new)
    if run:
        boundary, out_len, lengths, changed_then = run_state
        saved = (
            out[:out_len],
            tuple(entries[:n] for entries, n in zip(lists, lengths, strict=True)),
            changed_then,
        )
        changed = _emit_run(run, append, merged_reports) or changed
    else:
        boundary = len(messages)
        saved = (list(out), tuple(list(entries) for entries in lists), changed)
    _MEMO.put(messages, boundary, memo_key, saved)

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
        # Every entry was a message (else ``changed``), so this is a message sequence.
        return cast("Sequence[BaseMessage]", messages), SanitizeReport()
    return out, SanitizeReport(
        dropped_tool_calls=tuple(dropped_calls),
        dropped_empty_messages=tuple(dropped_empty),
        stripped_debug_payloads=tuple(stripped_debug),
        merged_user_messages=tuple(merged_reports),
        bootstrap_added=bootstrap,
        stripped_reasoning=tuple(stripped_reasoning),
        normalized_content=tuple(normalized_content),
        dropped_malformed=tuple(dropped_malformed),
        replaced_unencodable=tuple(replaced_unencodable),
    )


def _sanitize_stage(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], SanitizeReport]:
    """``sanitize_messages`` with the request's policy and model profile (thinking mode)."""
    return sanitize_messages(messages, ctx.policy, profile=ctx.profile)


SANITIZE_STAGE = PipelineStage("sanitize", _sanitize_stage)
"""The ``sanitize`` stage; it runs first, so it also turns message-like records into messages."""
