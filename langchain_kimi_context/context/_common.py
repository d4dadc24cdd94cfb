"""Small helpers shared by the pipeline stages (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_kimi_context.context.markers import MARKER_KEY

__all__ = [
    "content_text",
    "content_text_length",
    "is_blank_content",
    "is_summary",
    "is_user_turn",
    "message_ref",
]


_NON_CONTENT_BLOCKS = frozenset({"reasoning", "thinking", "reasoning_content", "tool_use"})


def message_ref(message: BaseMessage, index: int) -> str:
    """Return how reports name ``message``: its id, else ``"@<index>"`` (input position)."""
    return message.id if message.id else f"@{index}"


def _marker_kind(message: BaseMessage) -> Any:
    marker = message.additional_kwargs.get(MARKER_KEY)
    return marker.get("kind") if isinstance(marker, dict) else None


def is_summary(message: BaseMessage) -> bool:
    """Return whether ``message`` is a compaction summary (never a user turn)."""
    return _marker_kind(message) == "summary"


def is_user_turn(message: BaseMessage) -> bool:
    """Return whether ``message`` starts a real user turn.

    Summaries and the bootstrap turn are user-role messages on the wire but not turns the
    user wrote, so they are not counted.
    """
    return isinstance(message, HumanMessage) and _marker_kind(message) not in (
        "summary",
        "bootstrap",
    )


def is_blank_content(content: str | list[str | dict[str, Any]]) -> bool:
    """Return whether ``content`` carries nothing the model could read.

    Whitespace-only text and text blocks count as blank; any non-text block (an image,
    a file) makes the content non-blank. Reasoning blocks are not content.
    """
    if isinstance(content, str):
        return not content.strip()
    for block in content:
        if isinstance(block, str):
            if block.strip():
                return False
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "text":
                if str(block.get("text", "")).strip():
                    return False
            elif kind not in _NON_CONTENT_BLOCKS:
                return False
    return True


def content_text(content: str | list[str | dict[str, Any]]) -> str:
    """Return the text of ``content`` (text blocks joined with newlines)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def content_text_length(content: str | list[str | dict[str, Any]]) -> int:
    """Return ``len(content_text(content))`` without building the string for ``str``."""
    if isinstance(content, str):
        return len(content)
    return len(content_text(content))


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
