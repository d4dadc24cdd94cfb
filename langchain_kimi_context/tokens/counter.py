"""``TokenCounter``: counts a LangChain message list the way Kimi's template renders it.

Contract: text, content blocks, names, tool calls (id + name + JSON arguments), tool-call
ids of tool results, replayed ``reasoning_content``, tool schemas and a per-message
overhead are counted; per-message counts are memoised and the running totals of the
lists seen are kept, so re-counting a history that grew by one message tokenises only
that message. Never mutates its input.
"""

from __future__ import annotations

import json
import operator
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    RemoveMessage,
    ToolMessage,
    convert_to_messages,
)

from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.tokens.backends import TokenizerBackend, _resolve_backend

_IMAGE_BLOCK_TYPES = frozenset({"image_url", "image", "input_image"})
_REASONING_BLOCK_TYPES = frozenset({"reasoning", "thinking"})


@dataclass
class _Snapshot:
    """Running totals of one message list the counter saw (for O(new) recounts)."""

    messages: list[BaseMessage]
    fields: list[tuple[Any, Any]]
    tool_calls: list[Any]
    prefix: list[int] = field(default_factory=lambda: [0])


_FIELDS = operator.attrgetter("content", "additional_kwargs")
_DICT = operator.attrgetter("__dict__")
_GET_TOOL_CALLS = operator.methodcaller("get", "tool_calls")


def _tool_calls_of(messages: Sequence[BaseMessage]) -> list[Any]:
    return list(map(_GET_TOOL_CALLS, map(_DICT, messages)))


def _same_fields(m: BaseMessage, snap: _Snapshot, k: int) -> bool:
    return bool(_FIELDS(m) == snap.fields[k] and m.__dict__.get("tool_calls") == snap.tool_calls[k])


class TokenCounter:
    """Counts LangChain messages and tool schemas the way Kimi's chat template sends them.

    Per message: ``message_overhead`` (role markers), the text of the content (string
    or blocks; images count ``image_tokens``), ``name``, for AI messages each tool call's
    id, name and JSON arguments (``tool_call_overhead`` each, plus
    ``tool_calls_overhead`` per message) and the reasoning that is replayed (see
    ``reasoning``), for tool messages the ``tool_call_id``. A request adds
    ``reply_priming`` once and the tool schemas (:meth:`count_tools`).

    Counting is incremental: per-message counts are memoised in a bounded LRU keyed by
    the message id and a hash of everything counted, and the counter keeps the running
    totals of the last lists it counted (recognised by object identity of the messages
    and of their content, tool calls and ``additional_kwargs``). Re-counting a history
    that grew by one message therefore tokenises only that message; the rest is pointer
    comparisons. Messages are treated as immutable values, as LangChain and LangGraph do:
    reassigning a field (``msg.content = ...``) is detected, but an in-place edit of a
    content list or of the ``additional_kwargs`` dict is not (use
    ``msg.model_copy(update=...)``, or :meth:`clear_cache`).

    Thread-safe; one instance can serve every session of a process (see
    :func:`default_token_counter`).

    Args:
        backend: The tokenizer. Default: ``vocab_path`` / ``encoding`` when given, else
            the Kimi vocabulary named by ``KIMI_TOKENIZER_PATH``, else
            :class:`ApproximateBackend` (reported in one INFO log line).
        encoding: A tiktoken encoding name (e.g. ``"o200k_base"``); falls back to the
            approximate backend (with the warning) when it cannot be loaded offline.
        vocab_path: A Kimi ``tiktoken.model`` file; a wrong path raises
            :class:`~langchain_kimi_context.errors.KimiConfigurationError`.
        message_overhead: Tokens added per message (role and delimiters).
        tool_call_overhead: Tokens added per tool call (delimiters).
        tool_calls_overhead: Tokens added per AI message that has tool calls.
        tools_overhead: Tokens added once when tool schemas are sent.
        tool_overhead: Tokens added per tool schema.
        reply_priming: Tokens added once per request (the assistant turn header).
        image_tokens: Tokens counted per image block.
        reasoning: Which AI messages' reasoning (``additional_kwargs["reasoning_content"]``,
            else ``reasoning`` content blocks) is counted: ``"tool_calls"`` (default)
            only on messages with tool calls, which is where ``KimiChatModel`` replays it
            (Kimi thinking models require it there and ignore it elsewhere); ``"all"``;
            ``"none"``.
        cache_size: Maximum number of memoised per-message counts.
        snapshot_count: Number of message lists whose running totals are kept.
        download_timeout: Seconds to wait when a named encoding needs downloading.

    Example:
        >>> from langchain_kimi_context.tokens import ApproximateBackend
        >>> from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
        >>> counter = TokenCounter(backend=ApproximateBackend())
        >>> call = {"name": "read_file", "args": {"path": "a.py"}, "id": "functions.read_file:0"}
        >>> history = [
        ...     HumanMessage("Read a.py"),
        ...     AIMessage("", tool_calls=[call]),
        ...     ToolMessage("print('hi')", tool_call_id="functions.read_file:0"),
        ... ]
        >>> total = counter.count_messages(history)
        >>> total == sum(counter.count_message(m) for m in history) + counter.reply_priming
        True
        >>> counter.count_messages(history + [AIMessage("It prints hi.")]) > total
        True
    """

    def __init__(
        self,
        backend: TokenizerBackend | None = None,
        *,
        encoding: str | None = None,
        vocab_path: str | os.PathLike[str] | None = None,
        message_overhead: int = 4,
        tool_call_overhead: int = 3,
        tool_calls_overhead: int = 2,
        tools_overhead: int = 5,
        tool_overhead: int = 1,
        reply_priming: int = 3,
        image_tokens: int = 1_000,
        reasoning: Literal["tool_calls", "all", "none"] = "tool_calls",
        cache_size: int = 32_768,
        snapshot_count: int = 32,
        download_timeout: float = 10.0,
    ) -> None:
        if backend is not None and (encoding is not None or vocab_path is not None):
            raise KimiConfigurationError(
                "TokenCounter: pass either backend=... or encoding=/vocab_path=..., not both."
            )
        for label, value in (
            ("message_overhead", message_overhead),
            ("tool_call_overhead", tool_call_overhead),
            ("tool_calls_overhead", tool_calls_overhead),
            ("tools_overhead", tools_overhead),
            ("tool_overhead", tool_overhead),
            ("reply_priming", reply_priming),
            ("image_tokens", image_tokens),
        ):
            if value < 0:
                raise KimiConfigurationError(f"TokenCounter: {label} must be >= 0, got {value}.")
        if cache_size < 1 or snapshot_count < 1:
            raise KimiConfigurationError(
                "TokenCounter: cache_size and snapshot_count must be >= 1 "
                f"(got {cache_size}, {snapshot_count})."
            )
        if backend is not None and not isinstance(backend, TokenizerBackend):
            raise KimiConfigurationError(
                f"TokenCounter: backend must implement TokenizerBackend (name, exact, "
                f"count(text)); got {type(backend).__name__}."
            )
        self.backend: TokenizerBackend = (
            backend
            if backend is not None
            else _resolve_backend(encoding, vocab_path, download_timeout)
        )
        self.message_overhead = message_overhead
        self.tool_call_overhead = tool_call_overhead
        self.tool_calls_overhead = tool_calls_overhead
        self.tools_overhead = tools_overhead
        self.tool_overhead = tool_overhead
        self.reply_priming = reply_priming
        self.image_tokens = image_tokens
        if reasoning not in ("tool_calls", "all", "none"):
            raise KimiConfigurationError(
                f"TokenCounter: reasoning must be 'tool_calls', 'all' or 'none', got {reasoning!r}."
            )
        self.reasoning = reasoning
        self._cache_size = cache_size
        self._snapshot_count = snapshot_count
        self._lock = threading.RLock()
        self._memo: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self._tool_memo: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._by_second: dict[int, int] = {}
        self._ident: dict[int, tuple[Any, ...]] = {}
        self._forget = _identity_forgetter(self._ident)

    def __repr__(self) -> str:
        return f"TokenCounter(backend={self.backend.name!r})"

    # -- text ------------------------------------------------------------------------

    def count_text(self, text: str) -> int:
        """Count the tokens of a plain string (no message overhead).

        Args:
            text: Any string.

        Returns:
            The token count.
        """
        return self.backend.count(text)

    # -- messages --------------------------------------------------------------------

    def count_message(self, message: BaseMessage) -> int:
        """Count one message, including its overhead, tool calls and reasoning.

        Memoised by message id and a hash of everything counted (content, tool calls,
        reasoning, name, tool-call id), so a changed message is recounted. A message
        object counted before (and whose fields were not reassigned since) is answered
        from an identity cache without hashing anything.

        Args:
            message: Any LangChain message (``RemoveMessage`` counts 0).

        Returns:
            The token count.
        """
        fields = message.__dict__
        ident_key = id(message)
        seen = self._ident.get(ident_key)
        if (
            seen is not None
            and seen[0]() is message
            and seen[1] is fields.get("content")
            and seen[2] is fields.get("additional_kwargs")
            and seen[3] is fields.get("tool_calls")
            and seen[4] is fields.get("name")
            and seen[5] is fields.get("tool_call_id")
        ):
            return seen[6]
        if isinstance(message, RemoveMessage):
            return 0
        key = self._fingerprint(message)
        memo = self._memo
        with self._lock:
            count = memo.get(key)
            if count is not None:
                memo.move_to_end(key)
        if count is None:
            count = self._count_uncached(message)
            with self._lock:
                memo[key] = count
                if len(memo) > self._cache_size:
                    memo.popitem(last=False)
        self._remember(message, fields, count)
        return count

    def _remember(self, message: BaseMessage, fields: dict[str, Any], count: int) -> None:
        """Put ``message`` in the identity cache (a weak reference: it never keeps it alive)."""
        ident = self._ident
        key = id(message)
        try:
            ref = weakref.KeyedRef(message, self._forget, key)
        except TypeError:  # a message class without weak-reference support
            return
        ident[key] = (
            ref,
            fields.get("content"),
            fields.get("additional_kwargs"),
            fields.get("tool_calls"),
            fields.get("name"),
            fields.get("tool_call_id"),
            count,
        )
        if len(ident) > self._cache_size:
            with self._lock:
                while len(ident) > self._cache_size:
                    try:
                        ident.pop(next(iter(ident)))
                    except (StopIteration, KeyError, RuntimeError):
                        break

    def count_messages(
        self,
        messages: Sequence[BaseMessage | Any],
        tools: Sequence[Any] | None = None,
    ) -> int:
        """Count a request: messages, tool schemas and the reply priming.

        Args:
            messages: LangChain messages (anything ``convert_to_messages`` accepts is
                converted, without the incremental fast path).
            tools: Tool schemas sent with the request (see :meth:`count_tools`).

        Returns:
            The token count of the whole prompt (0 for no messages and no tools).
        """
        total = self._sum_messages(messages)
        if tools:
            total += self.count_tools(tools)
        if messages or tools:
            total += self.reply_priming
        return total

    def __call__(self, messages: Sequence[BaseMessage]) -> int:
        """Count ``messages`` (lets the counter be a ``trim_messages`` ``token_counter``).

        Args:
            messages: LangChain messages.

        Returns:
            Sum of :meth:`count_message` over the messages.
        """
        return self._sum_messages(messages)

    def _totals(self, msgs: Sequence[BaseMessage], at: int = 0) -> tuple[int, int]:
        """Return ``(tokens of msgs, tokens of msgs[:at])`` (sums of :meth:`count_message`).

        Reuses the running totals of an earlier list that shares a prefix with ``msgs``
        (the same message objects, whose content / ``additional_kwargs`` / tool calls
        still equal what was counted), so only the messages after that prefix are
        counted. The prefix check runs at C speed (``map`` over ``operator`` functions).
        A list whose first message is a new object but whose second is known (a system
        prompt rebuilt on every call) reuses the totals too.

        Raises:
            _NotMessagesError: A message to count is not a ``BaseMessage``.
        """
        if not isinstance(msgs, (list, tuple)):
            msgs = list(msgs)
        n = len(msgs)
        with self._lock:
            snap = self._snapshot_for(msgs)
            old = snap.messages
            limit = min(n, len(old))
            head = msgs[:limit]
            whole = limit == len(old)
            if (
                all(map(operator.is_, head, old))
                and list(map(_FIELDS, head)) == (snap.fields if whole else snap.fields[:limit])
                and _tool_calls_of(head) == (snap.tool_calls if whole else snap.tool_calls[:limit])
            ):
                k = limit
            else:
                k = 0
                while k < limit and msgs[k] is old[k] and _same_fields(msgs[k], snap, k):
                    k += 1
            if k < n:
                new = msgs[k:]
                if not all(map(isinstance, new, repeat(BaseMessage))):
                    raise _NotMessagesError
                if k < len(old):
                    del old[k:], snap.fields[k:], snap.tool_calls[k:], snap.prefix[k + 1 :]
                prefix = snap.prefix
                running = prefix[k]
                for m in new:
                    running += self.count_message(m)
                    prefix.append(running)
                    old.append(m)
                tail = old[k:]
                snap.fields.extend(map(_FIELDS, tail))
                snap.tool_calls.extend(_tool_calls_of(tail))
                if k < 2 <= len(old):
                    self._by_second[id(old[1])] = id(old[0])
            return snap.prefix[n], snap.prefix[at]

    def _snapshot_for(self, msgs: Sequence[BaseMessage]) -> _Snapshot:
        """Find (or create) the running totals to reuse for ``msgs`` (lock held)."""
        first = msgs[0]
        key = id(first)
        snaps = self._snapshots
        snap = snaps.get(key)
        if snap is not None and snap.messages and snap.messages[0] is first:
            snaps.move_to_end(key)
            return snap
        if len(msgs) > 1:
            old_key = self._by_second.get(id(msgs[1]), -1)
            candidate = snaps.get(old_key)
            if (
                candidate is not None
                and len(candidate.messages) > 1
                and candidate.messages[1] is msgs[1]
                and isinstance(first, BaseMessage)
            ):
                # Same history behind a new head object: swap the head, shift the totals.
                delta = self.count_message(first) - candidate.prefix[1]
                if delta:
                    candidate.prefix[1:] = [p + delta for p in candidate.prefix[1:]]
                candidate.messages[0] = first
                candidate.fields[0] = _FIELDS(first)
                candidate.tool_calls[0] = first.__dict__.get("tool_calls")
                del snaps[old_key]
                snaps[key] = candidate
                self._by_second[id(msgs[1])] = key
                return candidate
        snap = _Snapshot(messages=[], fields=[], tool_calls=[])
        snaps[key] = snap
        while len(snaps) > self._snapshot_count:
            _, evicted = snaps.popitem(last=False)
            if len(evicted.messages) > 1:
                self._by_second.pop(id(evicted.messages[1]), None)
        return snap

    def _sum_messages(self, messages: Sequence[Any]) -> int:
        """Sum of :meth:`count_message` over ``messages`` (incremental when possible)."""
        msgs = _as_sequence(messages)
        if not msgs:
            return 0
        try:
            return self._totals(msgs)[0]
        except _NotMessagesError:
            return sum(map(self.count_message, convert_to_messages(msgs)))

    def _fingerprint(self, m: BaseMessage) -> tuple[Any, ...]:
        content = m.content
        content_key = hash(content) if isinstance(content, str) else hash(repr(content))
        calls_key = 0
        if isinstance(m, AIMessage) and (m.tool_calls or m.invalid_tool_calls):
            calls_key = hash(repr(m.tool_calls) + repr(m.invalid_tool_calls))
        reasoning = m.additional_kwargs.get("reasoning_content")
        reasoning_key = hash(reasoning) if isinstance(reasoning, str) else 0
        call_id = m.tool_call_id if isinstance(m, ToolMessage) else None
        return (m.id, m.type, content_key, calls_key, reasoning_key, m.name, call_id)

    def _count_uncached(self, m: BaseMessage) -> int:
        count = self.backend.count
        total = self.message_overhead + self._count_content(m.content)
        if m.name:
            total += count(m.name) + 1
        if isinstance(m, AIMessage):
            if m.tool_calls or m.invalid_tool_calls:
                total += self.tool_calls_overhead
            for call in m.tool_calls:
                args = json.dumps(call["args"], ensure_ascii=False)
                total += self.tool_call_overhead + count(call["name"]) + count(args)
                if call.get("id"):
                    total += count(call["id"] or "")
            for bad in m.invalid_tool_calls:
                total += self.tool_call_overhead
                total += count(bad.get("name") or "") + count(bad.get("args") or "")
                total += count(bad.get("id") or "")
            mode = self.reasoning
            if mode == "all" or (mode == "tool_calls" and (m.tool_calls or m.invalid_tool_calls)):
                total += count(_reasoning_text(m))
        elif isinstance(m, ToolMessage):
            total += count(m.tool_call_id)
        return total

    def _count_content(self, content: str | list[Any]) -> int:
        # Not content.content_text: every part is counted, images and other non-text blocks
        # included (they are sent and cost tokens), reasoning blocks with the reasoning.
        count = self.backend.count
        if isinstance(content, str):
            return count(content)
        total = 0
        for block in content:
            if isinstance(block, str):
                total += count(block)
            elif isinstance(block, Mapping):
                kind = block.get("type")
                if kind == "text":
                    total += count(str(block.get("text", "")))
                elif kind in _IMAGE_BLOCK_TYPES:
                    total += self.image_tokens
                elif kind in _REASONING_BLOCK_TYPES:
                    pass  # counted (or not) with the message's reasoning
                else:
                    total += count(json.dumps(block, ensure_ascii=False, default=str))
            else:
                total += count(str(block))
        return total

    # -- tools -----------------------------------------------------------------------

    def count_tools(self, tools: Sequence[Any]) -> int:
        """Count tool schemas as sent in the request's ``tools`` field.

        Accepts OpenAI tool dicts (``{"type": "function", "function": {...}}``, also
        Kimi's ``builtin_function``), LangChain tools, pydantic models, TypedDicts and
        functions; non-dict tools are converted with
        ``langchain_core.utils.function_calling.convert_to_openai_tool``. Conversions
        and counts are memoised.

        Args:
            tools: The tools.

        Returns:
            The token count (0 for no tools).
        """
        if not tools:
            return 0
        total = self.tools_overhead
        for tool in tools:
            total += self.tool_overhead + self._count_tool(tool)
        return total

    def _count_tool(self, tool: Any) -> int:
        if isinstance(tool, Mapping):
            text = json.dumps(_tool_dict(tool), ensure_ascii=False, default=str)
            key: Any = ("json", text)
            anchor: Any = None
        else:
            key = ("obj", id(tool))
            anchor = tool
            text = None
        with self._lock:
            hit = self._tool_memo.get(key)
            if hit is not None and (anchor is None or hit[0] is anchor):
                self._tool_memo.move_to_end(key)
                return hit[1]
        if text is None:
            text = json.dumps(_tool_dict(tool), ensure_ascii=False, default=str)
        value = self.backend.count(text)
        with self._lock:
            self._tool_memo[key] = (anchor, value)
            if len(self._tool_memo) > 1024:
                self._tool_memo.popitem(last=False)
        return value

    def clear_cache(self) -> None:
        """Forget all memoised counts and running totals."""
        with self._lock:
            self._memo.clear()
            self._tool_memo.clear()
            self._snapshots.clear()
            self._by_second.clear()
            self._ident.clear()


def _reasoning_text(message: AIMessage) -> str:
    """The reasoning a chat model replays: ``reasoning_content``, else reasoning blocks.

    Counts ``thinking`` blocks too (an upper bound): ``KimiChatModel`` replays only
    ``reasoning`` blocks (``chat_models.request.reasoning_from_message``).
    """
    text = message.additional_kwargs.get("reasoning_content")
    if isinstance(text, str):
        return text
    if isinstance(message.content, list):
        return "".join(
            str(block.get("reasoning") or block.get("thinking") or "")
            for block in message.content
            if isinstance(block, Mapping) and block.get("type") in _REASONING_BLOCK_TYPES
        )
    return ""


def _tool_dict(tool: Any) -> dict[str, Any]:
    if isinstance(tool, Mapping) and tool.get("type") in {"function", "builtin_function"}:
        return dict(tool)
    from langchain_core.utils.function_calling import convert_to_openai_tool

    try:
        return convert_to_openai_tool(tool)
    except (ValueError, TypeError, KeyError) as exc:
        raise KimiConfigurationError(
            f"Cannot count tool {tool!r:.80}: expected an OpenAI tool dict, a LangChain "
            f"tool, a pydantic model or a typed function ({exc})."
        ) from exc


def _identity_forgetter(
    ident: dict[int, tuple[Any, ...]],
) -> Callable[[weakref.KeyedRef[int, BaseMessage]], None]:
    """Weak-reference callback that drops a dead message from the identity cache."""

    def forget(ref: weakref.KeyedRef[int, BaseMessage]) -> None:
        entry = ident.get(ref.key)
        if entry is not None and entry[0] is ref:
            ident.pop(ref.key, None)

    return forget


class _NotMessagesError(Exception):
    """Internal: a list holds message-like values that need ``convert_to_messages``."""


def _as_sequence(messages: Sequence[Any]) -> Sequence[Any]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(
            f"expected a sequence of messages, got {type(messages).__name__}; wrap a "
            f"single message in a list"
        )
    return messages


def _as_messages(messages: Sequence[Any]) -> Sequence[BaseMessage]:
    msgs = _as_sequence(messages)
    if all(map(isinstance, msgs, repeat(BaseMessage))):
        return msgs
    return convert_to_messages(msgs)
