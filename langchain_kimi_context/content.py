"""The text of message content: the one rule, below every layer that reads it.

- The *text* of a message's content is its text parts (plain strings and
  ``{"type": "text"}`` blocks) joined with newlines: parts are separate paragraphs, so
  joining them with nothing would glue the last word of one to the first word of the
  next. Reasoning, thinking, images and other non-text blocks are not text; content is
  *text only* when every part is text (:func:`text_only_content`).
- The rule reads LangChain content and wire (Chat Completions) content alike: both are a
  string or a list of strings and typed blocks.

:func:`langchain_kimi_context.context.messages.content_text` (the context pipeline's name
for it) and the cache stability checker both use :func:`content_text`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["content_text", "text_only_content"]


def _text_parts(content: Sequence[Any]) -> tuple[list[str], bool]:
    """The text parts of a content list, and whether every part was text."""
    parts: list[str] = []
    only_text = True
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            only_text = False
    return parts, only_text


def content_text(content: str | Sequence[Any] | None) -> str:
    """Return the text of ``content``: its text parts joined with newlines.

    Args:
        content: A string, or a list of strings and content blocks (``None`` is empty).

    Returns:
        The text.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(_text_parts(content)[0])


def text_only_content(content: str | Sequence[Any] | None) -> str | None:
    """Return the text of ``content`` when every part of it is text, else ``None``.

    Only such content can be rewritten as text (truncation does): content with an image
    or another non-text block is left as it is.

    Args:
        content: A string, or a list of strings and content blocks (``None`` is empty).

    Returns:
        The text, or ``None`` when a part is not text.
    """
    if content is None or isinstance(content, str):
        return content_text(content)
    parts, only_text = _text_parts(content)
    return "\n".join(parts) if only_text else None
