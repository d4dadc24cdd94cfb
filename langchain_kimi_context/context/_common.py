"""Small helpers shared by the pipeline stages (private).

Message rules (user turn, text, blank content) live in
:mod:`langchain_kimi_context.context.messages` and are re-exported here.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage

from langchain_kimi_context.context.messages import (
    content_text,
    content_text_length,
    is_blank_content,
    is_summary,
    is_user_turn,
)

__all__ = [
    "PrefixMemo",
    "content_text",
    "content_text_length",
    "is_blank_content",
    "is_summary",
    "is_user_turn",
    "message_ref",
]


def message_ref(message: BaseMessage, index: int) -> str:
    """Return how reports name ``message``: its id, else ``"@<index>"`` (input position)."""
    return message.id if message.id else f"@{index}"


def leading_system_count(messages: Sequence[BaseMessage]) -> int:
    """Return how many messages at the head of ``messages`` are system messages."""
    count = 0
    for message in messages:
        if not isinstance(message, SystemMessage):
            break
        count += 1
    return count


def finish_reason(message: AIMessage) -> Any:
    """Return the ``finish_reason`` recorded on an assistant message, if any."""
    return message.response_metadata.get("finish_reason")


class PrefixMemo:
    """Remembers, per history, a stage's fold state at the end of the last input it saw.

    Histories only grow between model calls, so a stage that folds left over the
    messages can resume from where the previous call stopped when the new input starts
    with the very same message objects (checked by identity at C speed). Entries are
    keyed by the identities of the first two messages (sessions may share one system
    prompt object; one entry per live session, LRU-bounded) and checked against the
    stage's settings. Messages are treated as immutable values, as LangChain, LangGraph
    and the package token counter do. Thread-safe.
    """

    def __init__(self, size: int = 64) -> None:
        self._entries: OrderedDict[tuple[int, int], tuple[Any, list[Any], Any, Any]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, items: Sequence[Any], key: Any) -> tuple[int, Any] | None:
        """Return ``(boundary, state)`` when ``items`` extends a remembered input."""
        if not items:
            return None
        head = self._head(items)
        with self._lock:
            entry = self._entries.get(head)
            if entry is not None:
                self._entries.move_to_end(head)
        if entry is None or entry[2] != key:
            return None
        prefix = entry[1]
        if len(items) < len(prefix) or not all(map(operator.is_, items, prefix)):
            return None
        return len(prefix), entry[3]

    def put(self, items: Sequence[Any], boundary: int, key: Any, state: Any) -> None:
        """Remember ``state`` as the fold state after ``items[:boundary]``."""
        if not items or not boundary:
            return
        prefix = list(items[:boundary])
        head = self._head(items)
        with self._lock:
            self._entries[head] = (items[0], prefix, key, state)
            self._entries.move_to_end(head)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    @staticmethod
    def _head(items: Sequence[Any]) -> tuple[int, int]:
        # Two messages: sessions often share one system-prompt object. The prefix check
        # in ``get`` compares identities, so a reused id can never give a wrong answer.
        return id(items[0]), id(items[1]) if len(items) > 1 else 0

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
