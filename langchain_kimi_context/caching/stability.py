"""Prefix-stability checker: explain what broke the cached prefix between two calls.

Contract: :func:`find_prefix_break` compares two canonical requests and returns a
:class:`PrefixBreak` (kind, message index, excerpt) or ``None``;
:class:`PrefixStabilityChecker` remembers the last request per session and reports
breaks to :data:`stability_logger` (``langchain_kimi_context.caching.stability``). Pure
apart from logging.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_kimi_context.caching.canonical import _tool_name, canonical_json
from langchain_kimi_context.content import content_text

stability_logger = logging.getLogger(__name__)
"""Logger of the prefix-stability checker: set it to DEBUG to see what breaks the cache."""


_TIMESTAMPISH = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}(:\d{2})?|\b\d{10,13}\b|"
    r"\b(mon|tue|wed|thu|fri|sat|sun)[a-z]*\b|\b(today|now|current (date|time))\b",
    re.IGNORECASE,
)

PrefixBreakKind = Literal[
    "tools_reordered",
    "tools_changed",
    "tool_schema_changed",
    "timestamp_in_system_prompt",
    "system_prompt_changed",
    "reasoning_content_dropped",
    "message_edited",
    "message_inserted_or_removed",
    "history_truncated",
]


@dataclass(frozen=True, kw_only=True)
class PrefixBreak:
    """Why the prefix of a request differs from the previous request of its session.

    Attributes:
        session_id: The session.
        kind: A machine-readable cause (e.g. ``"timestamp_in_system_prompt"``).
        reason: A human-readable explanation.
        part: ``"tools"`` or ``"messages"``.
        message_index: Index of the first differing message (``None`` for tools).
        byte_offset: Offset of the first differing byte in the canonical serialisation of
            the request prefix (tools, then one message per line).
        previous_excerpt: Text around that byte in the previous request.
        current_excerpt: Text around that byte in this request.
        reusable_messages: Leading messages still shared with the previous request.

    Example:
        >>> b = PrefixBreak(session_id="s", kind="message_edited", reason="r",
        ...                 part="messages", message_index=2, byte_offset=10,
        ...                 previous_excerpt="a", current_excerpt="b", reusable_messages=2)
        >>> b.kind
        'message_edited'
    """

    session_id: str
    kind: PrefixBreakKind
    reason: str
    part: Literal["tools", "messages"]
    message_index: int | None
    byte_offset: int
    previous_excerpt: str
    current_excerpt: str
    reusable_messages: int


def _serialise_prefix(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> tuple[str, list[str]]:
    tools_text = canonical_json(list(tools or ()))
    lines = [canonical_json(m) for m in messages]
    return tools_text, lines


def _first_diff(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


def _excerpt(text: str, offset: int, width: int = 40) -> str:
    return text[max(0, offset - width) : offset + width]


def _explain_message_change(
    previous: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[PrefixBreakKind, str]:
    role = previous.get("role")
    if role != current.get("role"):
        return (
            "message_inserted_or_removed",
            f"role changed from {role!r} to {current.get('role')!r}: a message was "
            "inserted, removed or re-ordered",
        )
    if (
        role == "assistant"
        and previous.get("reasoning_content")
        and not current.get("reasoning_content")
    ):
        return (
            "reasoning_content_dropped",
            "reasoning_content of an earlier assistant message was dropped; replay it "
            "unchanged to keep the prefix stable",
        )
    if role == "system":
        old, new = content_text(previous.get("content")), content_text(current.get("content"))
        at = _first_diff(old, new)
        window_old, window_new = _excerpt(old, at, 24), _excerpt(new, at, 24)
        if _TIMESTAMPISH.search(window_old) and _TIMESTAMPISH.search(window_new):
            return (
                "timestamp_in_system_prompt",
                "the system prompt changed where it looks like a date/time; move volatile "
                "values out of the system prompt (e.g. into the latest user message)",
            )
        return ("system_prompt_changed", "the system prompt changed")
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    return (
        "message_edited",
        f"an earlier {role} message was edited (changed field(s): {', '.join(changed)})",
    )


def _explain_tools_change(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> tuple[PrefixBreakKind, str]:
    old_names = [_tool_name(t) for t in previous]
    new_names = [_tool_name(t) for t in current]
    if sorted(old_names) != sorted(new_names):
        added = sorted(set(new_names) - set(old_names))
        removed = sorted(set(old_names) - set(new_names))
        return ("tools_changed", f"the tool list changed (added {added}, removed {removed})")
    old_by_name = {_tool_name(t): canonical_json(t) for t in previous}
    new_by_name = {_tool_name(t): canonical_json(t) for t in current}
    changed = sorted(n for n in old_by_name if old_by_name[n] != new_by_name[n])
    if changed:
        return ("tool_schema_changed", f"the schema of tool(s) {changed} changed")
    return (
        "tools_reordered",
        f"the tools were re-ordered ({old_names} -> {new_names}); bind them in a fixed "
        "order or keep canonicalize/sort_tools on",
    )


def find_prefix_break(
    previous: Mapping[str, Any], current: Mapping[str, Any], *, session_id: str = ""
) -> PrefixBreak | None:
    """Compare two consecutive request payloads of a session and explain a prefix break.

    The automatic prefix cache can serve the new request from cache only if it starts with
    exactly the previous request (same tools, same earlier messages). This returns
    ``None`` when that holds, else the first differing byte/message and the likely cause.

    Args:
        previous: The previous request body (``messages``, ``tools``).
        current: The new request body.
        session_id: Reported back in the result.

    Returns:
        A :class:`PrefixBreak`, or ``None`` if the previous request is a prefix of this one.

    Example:
        >>> sys1 = {"role": "system", "content": "You help. Date: 2026-01-01 10:00"}
        >>> sys2 = {"role": "system", "content": "You help. Date: 2026-01-01 10:05"}
        >>> user = {"role": "user", "content": "hi"}
        >>> find_prefix_break({"messages": [sys1, user]}, {"messages": [sys2, user]}).kind
        'timestamp_in_system_prompt'
        >>> find_prefix_break({"messages": [sys1]}, {"messages": [sys1, user]}) is None
        True
    """
    old_tools = list(previous.get("tools") or ())
    new_tools = list(current.get("tools") or ())
    old_messages = list(previous.get("messages") or ())
    new_messages = list(current.get("messages") or ())
    old_tools_text, old_lines = _serialise_prefix(old_messages, old_tools)
    new_tools_text, new_lines = _serialise_prefix(new_messages, new_tools)
    if old_tools_text != new_tools_text:
        at = _first_diff(old_tools_text, new_tools_text)
        kind, reason = _explain_tools_change(old_tools, new_tools)
        return PrefixBreak(
            session_id=session_id,
            kind=kind,
            reason=reason,
            part="tools",
            message_index=None,
            byte_offset=len(old_tools_text[:at].encode()),
            previous_excerpt=_excerpt(old_tools_text, at),
            current_excerpt=_excerpt(new_tools_text, at),
            reusable_messages=0,
        )
    offset = len(old_tools_text.encode()) + 1
    for index, old_line in enumerate(old_lines):
        if index >= len(new_lines):
            return PrefixBreak(
                session_id=session_id,
                kind="history_truncated",
                reason=(
                    f"the request has {len(new_lines)} messages, fewer than the "
                    f"{len(old_lines)} of the previous one (history cut or compacted)"
                ),
                part="messages",
                message_index=index,
                byte_offset=offset,
                previous_excerpt=_excerpt(old_line, 0),
                current_excerpt="",
                reusable_messages=index,
            )
        new_line = new_lines[index]
        if old_line != new_line:
            at = _first_diff(old_line, new_line)
            kind, reason = _explain_message_change(old_messages[index], new_messages[index])
            return PrefixBreak(
                session_id=session_id,
                kind=kind,
                reason=f"message {index}: {reason}",
                part="messages",
                message_index=index,
                byte_offset=offset + len(old_line[:at].encode()),
                previous_excerpt=_excerpt(old_line, at),
                current_excerpt=_excerpt(new_line, at),
                reusable_messages=index,
            )
        offset += len(old_line.encode()) + 1
    return None


class PrefixStabilityChecker:
    """Debug facility: remembers each session's last request and reports prefix breaks.

    Reports go to :data:`stability_logger` (``langchain_kimi_context.caching.stability``)
    at WARNING when the checker was enabled explicitly, at DEBUG otherwise, and are kept
    in :attr:`reports` (the most recent ``max_reports``).

    Args:
        enabled: Check every call. If ``False`` the checker only runs while
            :data:`stability_logger` is enabled for DEBUG.
        max_sessions: Sessions whose last request is remembered (oldest dropped first).
        max_reports: Reports kept in :attr:`reports`.

    Example:
        >>> checker = PrefixStabilityChecker(enabled=True)
        >>> t = lambda n: {"type": "function", "function": {"name": n}}
        >>> checker.check("s", {"messages": [], "tools": [t("a"), t("b")]}) is None
        True
        >>> checker.check("s", {"messages": [], "tools": [t("b"), t("a")]}).kind
        'tools_reordered'
    """

    def __init__(
        self, *, enabled: bool = False, max_sessions: int = 1024, max_reports: int = 100
    ) -> None:
        self.enabled = enabled
        self.max_sessions = max_sessions
        self.max_reports = max_reports
        self.reports: list[PrefixBreak] = []
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether the checker runs (enabled, or its logger is at DEBUG)."""
        return self.enabled or stability_logger.isEnabledFor(logging.DEBUG)

    def check(self, session_id: str, payload: Mapping[str, Any]) -> PrefixBreak | None:
        """Compare ``payload`` with the session's previous request and remember it.

        Args:
            session_id: The session.
            payload: The request body about to be sent.

        Returns:
            The break, or ``None`` (also when inactive or for the first request).
        """
        if not self.active:
            return None
        snapshot = {
            "messages": copy.deepcopy(list(payload.get("messages") or ())),
            "tools": copy.deepcopy(list(payload.get("tools") or ())),
        }
        with self._lock:
            previous = self._last.pop(session_id, None)
            self._last[session_id] = snapshot
            while len(self._last) > self.max_sessions:
                self._last.pop(next(iter(self._last)))
        if previous is None:
            return None
        found = find_prefix_break(previous, snapshot, session_id=session_id)
        if found is not None:
            with self._lock:
                self.reports.append(found)
                del self.reports[: -self.max_reports]
            level = logging.WARNING if self.enabled else logging.DEBUG
            stability_logger.log(
                level,
                "Prompt prefix of session %s broke at byte %d (%s): %s | before: %r | now: %r",
                session_id,
                found.byte_offset,
                found.kind,
                found.reason,
                found.previous_excerpt,
                found.current_excerpt,
            )
        return found
