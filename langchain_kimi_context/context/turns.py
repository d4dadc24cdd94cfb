"""Limit history by user turns, with a limit chosen by session kind and hysteresis.

Session keys look like ``[agent:<id>:]<provider>:<kind>:<user id>`` (the user id may
contain ``:``), optionally followed by ``:thread:<digits>`` or ``:topic:<digits>``, which
is stripped. The limit N:

- kind ``dm``/``direct``: ``policy.dm_user_history_limits[user]`` (0 counts as set and
  means unlimited), else ``policy.dm_history_limit``, else ``policy.history_limit``;
- kind ``channel``/``group``: ``policy.channel_history_limit``, else
  ``policy.history_limit``;
- anything else, or no key: ``policy.history_limit``.

``None``/0/negative means unlimited. Limiting keeps the leading system messages, any
compaction summaries (a summary is never a user turn), and everything from the
N-th-from-last user message on.

Hysteresis K (``policy.history_hysteresis``): with T user turns, the number kept is
``T`` when ``T <= N + K``, else ``N + ((T - N) mod (K + 1))``. It is stateless and
prefix-stable: the first kept user turn only moves every K + 1 turns (a "cut event"), so
between cuts the request prefix stays byte-identical and the provider's prefix cache
keeps hitting. With K = 0 this is the plain "last N turns".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage

from langchain_kimi_context.context._common import (
    PrefixMemo,
    is_summary,
    is_user_turn,
    leading_system_count,
    message_ref,
)
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.context.reports import LimitReport
from langchain_kimi_context.context.stage import PipelineStage, StageContext

__all__ = [
    "LIMIT_TURNS_STAGE",
    "SessionKey",
    "kept_user_turns",
    "limit_history_turns",
    "parse_session_key",
    "resolve_history_limit",
]

_THREAD_SUFFIX = re.compile(r":(?:thread|topic):\d+$")


@dataclass(frozen=True)
class SessionKey:
    """A parsed session key.

    Attributes:
        agent_id: The ``agent:<id>`` prefix's id, if present.
        provider: The channel provider (``"telegram"``, ``"slack"``, ...).
        kind: Lower-cased kind (``"dm"``, ``"direct"``, ``"channel"``, ``"group"``, ...).
        user: The rest (user or channel id; may contain ``:``).

    Example:
        >>> parse_session_key("agent:a1:slack:dm:U:42:thread:7")
        SessionKey(agent_id='a1', provider='slack', kind='dm', user='U:42')
    """

    agent_id: str | None
    provider: str
    kind: str
    user: str


def parse_session_key(key: str) -> SessionKey | None:
    """Parse ``[agent:<id>:]<provider>:<kind>:<user id>[:thread:<n>|:topic:<n>]``.

    Args:
        key: The session key.

    Returns:
        The parsed key, or ``None`` when it does not have that shape.

    Example:
        >>> parse_session_key("telegram:group:-100:topic:12").kind
        'group'
        >>> parse_session_key("just-a-thread-id") is None
        True
    """
    rest = _THREAD_SUFFIX.sub("", key.strip())
    agent_id: str | None = None
    if rest.startswith("agent:"):
        parts = rest.split(":", 2)
        if len(parts) < 3:
            return None
        agent_id, rest = parts[1], parts[2]
    parts = rest.split(":", 2)
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        return None
    return SessionKey(agent_id, parts[0], parts[1].lower(), parts[2])


def resolve_history_limit(
    session_key: str | None, policy: ContextPolicy
) -> tuple[int | None, str, str | None]:
    """Return ``(limit, source, kind)`` for a session key.

    Args:
        session_key: The key, or ``None``.
        policy: ``history_limit``, ``dm_history_limit``, ``dm_user_history_limits``,
            ``channel_history_limit``.

    Returns:
        The limit (``None`` = unlimited; 0/negative normalised to ``None``), the policy
        field it came from, and the parsed kind (``None`` without a parsable key).

    Example:
        >>> p = ContextPolicy(history_limit=50, dm_history_limit=20,
        ...                   dm_user_history_limits={"bob": 0}, channel_history_limit=10)
        >>> resolve_history_limit("slack:dm:alice", p)
        (20, 'policy.dm_history_limit', 'dm')
        >>> resolve_history_limit("slack:direct:bob", p)
        (None, 'policy.dm_user_history_limits[bob]', 'direct')
        >>> resolve_history_limit("discord:channel:c1:thread:9", p)
        (10, 'policy.channel_history_limit', 'channel')
        >>> resolve_history_limit(None, p)
        (50, 'policy.history_limit', None)
    """
    parsed = parse_session_key(session_key) if session_key else None
    kind = parsed.kind if parsed else None
    value: int | None = None
    source = ""
    if parsed and kind in ("dm", "direct"):
        if parsed.user in policy.dm_user_history_limits:
            value = policy.dm_user_history_limits[parsed.user]
            source = f"policy.dm_user_history_limits[{parsed.user}]"
        elif policy.dm_history_limit is not None:
            value, source = policy.dm_history_limit, "policy.dm_history_limit"
    elif parsed and kind in ("channel", "group") and policy.channel_history_limit is not None:
        value, source = policy.channel_history_limit, "policy.channel_history_limit"
    if not source:
        if policy.history_limit is None:
            return None, "none", kind
        value, source = policy.history_limit, "policy.history_limit"
    return (value if value is not None and value > 0 else None), source, kind


def kept_user_turns(total: int, limit: int | None, hysteresis: int = 0) -> int:
    """Return how many user turns to keep out of ``total``.

    ``total`` if ``total <= limit + hysteresis`` else
    ``limit + (total - limit) % (hysteresis + 1)``.

    Args:
        total: User turns in the history (T).
        limit: N (``None``/0/negative = unlimited).
        hysteresis: K >= 0.

    Returns:
        The number of user turns kept.

    Example:
        >>> [kept_user_turns(t, 2, 2) for t in range(1, 10)]
        [1, 2, 3, 4, 2, 3, 4, 2, 3]
        >>> [kept_user_turns(t, 2) for t in range(1, 5)]
        [1, 2, 2, 2]
    """
    if limit is None or limit <= 0 or total <= limit + hysteresis:
        return total
    return limit + (total - limit) % (hysteresis + 1)


# User-turn positions per history: appending messages costs O(new).
_POSITIONS = PrefixMemo()


def _user_positions(messages: Sequence[BaseMessage]) -> list[int]:
    start = 0
    positions: list[int] = []
    resumed = _POSITIONS.get(messages, None)
    if resumed is not None:
        start, saved = resumed
        positions = list(saved)
    positions.extend(
        i
        for i in range(start, len(messages))
        if isinstance(m := messages[i], HumanMessage)
        and (not m.additional_kwargs or is_user_turn(m))
    )
    _POSITIONS.put(messages, len(messages), None, tuple(positions))
    return positions


def limit_history_turns(
    messages: Sequence[BaseMessage],
    policy: ContextPolicy,
    *,
    session_key: str | None = None,
    limit: int | None = None,
) -> tuple[Sequence[BaseMessage], LimitReport]:
    """Keep the last N user turns (with hysteresis), the system head and summaries.

    Args:
        messages: The history (never mutated).
        policy: Limits and ``history_hysteresis``.
        session_key: Picks the limit by session kind (module docstring).
        limit: An explicit N that overrides the policy and session key.

    Returns:
        ``(messages, report)``; the very same sequence when nothing is cut.

    Example:
        >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        >>> h = [SystemMessage("sys", id="s")]
        >>> for i in range(4):
        ...     h += [HumanMessage(f"q{i}", id=f"u{i}"), AIMessage(f"a{i}", id=f"a{i}")]
        >>> out, report = limit_history_turns(h, ContextPolicy(history_limit=2))
        >>> [m.id for m in out]
        ['s', 'u2', 'a2', 'u3', 'a3']
        >>> report.dropped_messages
        ('u0', 'a0', 'u1', 'a1')
        >>> limit_history_turns(h, ContextPolicy(history_limit=2, history_hysteresis=2))[0] is h
        True
    """
    if limit is not None:
        n: int | None = limit if limit > 0 else None
        source, kind = "argument", None
        if session_key:
            parsed = parse_session_key(session_key)
            kind = parsed.kind if parsed else None
    else:
        n, source, kind = resolve_history_limit(session_key, policy)
    k = policy.history_hysteresis
    user_positions = _user_positions(messages)
    total = len(user_positions)
    keep = kept_user_turns(total, n, k)
    if keep >= total:
        return messages, LimitReport(
            limit=n,
            limit_source=source,
            session_kind=kind,
            hysteresis=k,
            user_turns_before=total,
            user_turns_kept=total,
        )
    cut = user_positions[total - keep] if keep else len(messages)
    head = leading_system_count(messages)
    out: list[BaseMessage] = list(messages[:head])
    dropped: list[str] = []
    for index in range(head, cut):
        message = messages[index]
        if is_summary(message):
            out.append(message)
        else:
            dropped.append(message_ref(message, index))
    out.extend(messages[cut:])
    return out, LimitReport(
        limit=n,
        limit_source=source,
        session_kind=kind,
        hysteresis=k,
        user_turns_before=total,
        user_turns_kept=keep,
        dropped_messages=tuple(dropped),
    )


def _limit_stage(
    messages: Sequence[BaseMessage], ctx: StageContext
) -> tuple[Sequence[BaseMessage], LimitReport]:
    """``limit_history_turns`` for the session kind of ``ctx.session_key``."""
    return limit_history_turns(messages, ctx.policy, session_key=ctx.session_key)


LIMIT_TURNS_STAGE = PipelineStage("limit_turns", _limit_stage)
"""The ``limit_turns`` stage (its report sets ``StageContext.limit_cut`` for later stages)."""
