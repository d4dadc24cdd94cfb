"""What the package means by a user turn, a system message, message text and a digest.

Every stage, strategy, face and tool asks this module; nothing else restates these rules.

- A *user turn* starts at a human message the package did not create: compaction
  summaries and the bootstrap turn are user-role messages on the wire but not turns the
  user wrote.
- A *system message* is a ``SystemMessage`` that is not a compaction summary.
- The *text* of a message is its text blocks (plain strings and ``{"type": "text"}``
  blocks) joined with newlines (:func:`langchain_kimi_context.content.content_text`, the
  model layer's home of the rule, re-exported here with ``text_only_content``): blocks
  are separate paragraphs. Reasoning, thinking, images and other non-text blocks are not
  text.
- The *digest* of a message is a SHA-1 over its type, content, tool-call id and tool calls
  (name, args, id) in canonical JSON: equal for messages the model would see as equal,
  stable across processes and versions of Python.
- The *marker kind* is the ``"kind"`` of the package marker
  (:mod:`langchain_kimi_context.context.markers`), or ``None``.
- A message without an *id* gets ``"kc-<index>-<digest>"`` (:func:`ensure_message_ids`):
  its position in the log plus its digest, the same on every call for an append-only log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_kimi_context.content import content_text, text_only_content
from langchain_kimi_context.context.markers import get_marker

__all__ = [
    "content_text",
    "content_text_length",
    "ensure_message_ids",
    "is_blank_content",
    "is_summary",
    "is_system",
    "is_user_turn",
    "marker_kind",
    "message_digest",
    "message_text",
    "text_only_content",
]

_NON_CONTENT_BLOCKS = frozenset({"reasoning", "thinking", "reasoning_content", "tool_use"})


def marker_kind(message: BaseMessage) -> str | None:
    """Return the kind of the package marker on ``message``, or ``None`` when unmarked."""
    marker = get_marker(message)
    return None if marker is None else str(marker["kind"])


def is_summary(message: BaseMessage) -> bool:
    """Return whether ``message`` is a compaction summary (never a user turn)."""
    return marker_kind(message) == "summary"


def is_user_turn(message: BaseMessage) -> bool:
    """Return whether ``message`` starts a real user turn.

    Args:
        message: Any message.

    Returns:
        ``True`` for a human message the package did not create (not a summary, not the
        bootstrap turn).
    """
    return isinstance(message, HumanMessage) and marker_kind(message) not in (
        "summary",
        "bootstrap",
    )


def is_system(message: BaseMessage) -> bool:
    """Return whether ``message`` is a system message that is not a summary."""
    return isinstance(message, SystemMessage) and not is_summary(message)


def is_blank_content(content: str | list[str | dict[str, Any]]) -> bool:
    """Return whether ``content`` carries nothing the model could read.

    Whitespace-only text and text blocks count as blank; any non-text block (an image,
    a file) makes the content non-blank. Reasoning blocks are not content.
    """
    if isinstance(content, str):
        return not content or content.isspace()
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


def content_text_length(content: str | list[str | dict[str, Any]]) -> int:
    """Return ``len(content_text(content))`` without building the string for ``str``."""
    if isinstance(content, str):
        return len(content)
    return len(content_text(content))


def message_text(message: BaseMessage) -> str:
    """Return the visible text of ``message`` (reasoning/thinking parts excluded)."""
    return content_text(message.content)


def message_digest(message: BaseMessage) -> str:
    """Return the SHA-1 hex digest of ``message``'s type, content and tool calls."""
    payload = {
        "type": message.type,
        "content": message.content,
        "tool_call_id": getattr(message, "tool_call_id", None),
        "tool_calls": [
            {"name": c["name"], "args": c["args"], "id": c.get("id")}
            for c in getattr(message, "tool_calls", None) or []
        ],
    }
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def ensure_message_ids(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Return the messages with an id on every one (copies for those lacking one).

    A message without an id gets ``"kc-<index>-<hash>"``: its position in the log plus
    a hash of its type and content. For an append-only log the ids are therefore the same
    on every call, which is what compaction records and recall refs rely on (LangGraph's
    ``add_messages`` assigns UUIDs anyway). Messages that already have an id are returned
    as they are; originals are never mutated.

    Args:
        messages: The full log.

    Returns:
        A new list; messages that had ids are the same objects.
    """
    out: list[BaseMessage] = []
    for index, message in enumerate(messages):
        if message.id:
            out.append(message)
        else:
            digest = message_digest(message)[:12]
            out.append(message.model_copy(update={"id": f"kc-{index}-{digest}"}))
    return out
