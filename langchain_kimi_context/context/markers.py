"""Markers the package puts on the messages it creates or rewrites.

A marker lives in ``message.additional_kwargs["kimi_context"]`` (a dict with at least a
``"kind"``). ``additional_kwargs`` keys other than the OpenAI ones are never sent to the
API, so markers are invisible to the model but survive checkpoints, which lets every
stage recognise the package's own messages (a summary is not a user turn, a synthetic
tool result is not a real one) without guessing from text.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from langchain_core.messages import BaseMessage

__all__ = ["MARKER_KEY", "MarkerKind", "get_marker", "is_marked", "with_marker"]

MARKER_KEY = "kimi_context"

MarkerKind = Literal[
    "summary",
    "bootstrap",
    "synthetic_tool_result",
    "cleared_tool_result",
    "truncated_tool_result",
    "collapsed_code",
    "merged_user",
]

M = TypeVar("M", bound=BaseMessage)


def get_marker(message: BaseMessage) -> dict[str, Any] | None:
    """Return the package marker of ``message``, or ``None``.

    Args:
        message: Any LangChain message.

    Returns:
        The marker dict (with ``"kind"``) or ``None`` for messages the package did not
        create or rewrite.
    """
    marker = message.additional_kwargs.get(MARKER_KEY)
    return marker if isinstance(marker, dict) and "kind" in marker else None


def is_marked(message: BaseMessage, *kinds: MarkerKind) -> bool:
    """Return whether ``message`` carries a marker of one of ``kinds`` (any if none given).

    Args:
        message: Any LangChain message.
        *kinds: Marker kinds to test for.

    Returns:
        ``True`` when marked accordingly.
    """
    marker = get_marker(message)
    return marker is not None and (not kinds or marker["kind"] in kinds)


def with_marker(message: M, kind: MarkerKind, **info: Any) -> M:
    """Return a copy of ``message`` carrying the marker ``kind`` (the original is untouched).

    Args:
        message: The message to copy.
        kind: The marker kind.
        **info: Extra JSON-serialisable details stored in the marker.

    Returns:
        The marked copy.
    """
    extra = dict(message.additional_kwargs)
    extra[MARKER_KEY] = {"kind": kind, **info}
    return message.model_copy(update={"additional_kwargs": extra})
