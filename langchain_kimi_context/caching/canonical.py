"""Canonical request form: the same logical prefix, byte for byte, on every call.

Contract: :func:`canonicalize_payload` sorts tools by name and gives every JSON object
sorted keys (tool-call argument strings get stable separators) without mutating its
input; :func:`prefix_fingerprint` / :func:`stable_prefix_length` identify the cacheable
prefix; :func:`prompt_cache_key_for` hashes a session id into a routing hint;
:func:`read_cached_tokens` reads cache hits from any usage shape. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_kimi_context.context.markers import is_marked
from langchain_kimi_context.usage import cached_tokens


def _sort_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _sort_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sort_keys(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Serialise ``value`` canonically: sorted keys, compact separators, UTF-8 kept.

    Args:
        value: Any JSON-serialisable value.

    Returns:
        The canonical JSON text.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tool_name(tool: Mapping[str, Any]) -> str:
    function = tool.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        return str(function["name"])
    return str(tool.get("name", ""))


def canonicalize_tools(
    tools: Sequence[Mapping[str, Any]] | None, *, sort: bool = True
) -> list[dict[str, Any]]:
    """Return tool definitions in canonical form (the input is not modified).

    Every JSON object gets sorted keys and, with ``sort``, tools are ordered by name, so
    binding the same tools in another order or with differently ordered schema keys
    produces the same bytes.

    Args:
        tools: OpenAI-format tool definitions (``{"type": "function", "function": ...}``).
        sort: Sort tools by function name.

    Returns:
        New canonical tool dicts.
    """
    result = [_sort_keys(dict(tool)) for tool in tools or ()]
    if sort:
        result.sort(key=_tool_name)
    return result


def _canonical_arguments(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return canonical_json(parsed)


def _canonical_message(message: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _sort_keys(dict(message))
    tool_calls = out.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and "arguments" in function:
                function["arguments"] = _canonical_arguments(function["arguments"])
    return out


def canonicalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return chat messages (API dicts) in canonical form (the input is not modified).

    Keys are sorted at every level and tool-call ``arguments`` strings are re-serialised
    with sorted keys and compact separators (invalid JSON is kept as is). Text content is
    never changed.

    Args:
        messages: Messages in the OpenAI/Kimi wire format.

    Returns:
        New canonical message dicts.
    """
    return [_canonical_message(m) for m in messages]


def canonicalize_payload(payload: Mapping[str, Any], *, sort_tools: bool = True) -> dict[str, Any]:
    """Return a copy of a chat-completions payload with canonical ``messages`` and ``tools``.

    Args:
        payload: The request body (``model``, ``messages``, ``tools``, ...).
        sort_tools: Sort tools by name.

    Returns:
        A new payload; other keys are copied unchanged.

    Example:
        >>> p = {"model": "m", "messages": [{"content": "hi", "role": "user"}]}
        >>> list(canonicalize_payload(p)["messages"][0])
        ['content', 'role']
    """
    out = dict(payload)
    if isinstance(out.get("messages"), list):
        out["messages"] = canonicalize_messages(out["messages"])
    if out.get("tools"):
        out["tools"] = canonicalize_tools(out["tools"], sort=sort_tools)
    return out


def prefix_fingerprint(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """Return the fingerprint (SHA-256 hex) of a prefix of messages plus tools.

    Two prefixes have the same fingerprint iff their canonical forms are identical, so a
    fingerprint decides whether an explicit cache can be reused.

    Args:
        messages: The prefix messages (API dicts).
        tools: The tool definitions.

    Returns:
        64 hex characters.

    Example:
        >>> a = prefix_fingerprint([{"role": "system", "content": "x"}])
        >>> a == prefix_fingerprint([{"content": "x", "role": "system"}])
        True
        >>> a == prefix_fingerprint([{"role": "system", "content": "y"}])
        False
    """
    body = canonical_json(
        {"messages": canonicalize_messages(messages), "tools": canonicalize_tools(tools)}
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def stable_prefix_length(
    messages: Sequence[Mapping[str, Any]],
    source_messages: Sequence[BaseMessage] | None = None,
) -> int:
    """Return how many leading messages form the stable, cacheable prefix.

    The stable prefix is the run of leading ``system`` messages plus any leading message
    marked ``"summary"`` (see :mod:`langchain_kimi_context.context.markers`; a compaction's
    pinned summary). Markers are read from ``source_messages`` (the LangChain messages the
    payload was built from) when they line up one to one with ``messages``.

    Args:
        messages: The payload's messages (API dicts).
        source_messages: The LangChain messages behind them, if known.

    Returns:
        The number of leading messages to cache (0 = nothing stable).
    """
    aligned = source_messages is not None and len(source_messages) == len(messages)
    count = 0
    for index, message in enumerate(messages):
        if message.get("role") == "system":
            count += 1
            continue
        if aligned and source_messages is not None and is_marked(source_messages[index], "summary"):
            count += 1
            continue
        break
    return count


def prompt_cache_key_for(session_id: str, *, prefix: str = "lkc-") -> str:
    """Return the ``prompt_cache_key`` derived from a session/thread id.

    The id is hashed, so the key is stable for a session but reveals nothing about it.

    Args:
        session_id: The session or LangGraph thread id.
        prefix: A prefix for the key.

    Returns:
        ``prefix`` + 32 hex characters.

    Example:
        >>> prompt_cache_key_for("thread-1") == prompt_cache_key_for("thread-1")
        True
        >>> len(prompt_cache_key_for("thread-1"))
        36
    """
    digest = hashlib.sha256(f"kimi-session:{session_id}".encode()).hexdigest()[:32]
    return prefix + digest


def read_cached_tokens(usage: Mapping[str, Any] | None) -> int:
    """Return the cached prompt tokens of a usage object, the way Kimi reports them.

    The rule is :func:`langchain_kimi_context.usage.cached_tokens` (top-level
    ``cached_tokens`` first, then ``prompt_tokens_details.cached_tokens``).

    Args:
        usage: The ``usage`` object of a response (or ``None``).

    Returns:
        The cached tokens (0 when absent).
    """
    return cached_tokens(usage) or 0
