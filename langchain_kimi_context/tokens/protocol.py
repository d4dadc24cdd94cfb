"""The one token-counter protocol the package accepts, and how a counter is resolved.

Contract: every ``token_counter=`` parameter (pipeline stages, compaction, recovery,
agent, faces) takes a :class:`SupportsTokenCounting`: ``count_text``, ``count_message``,
``count_messages`` (with optional tools) and ``count_tools``.
:class:`~langchain_kimi_context.tokens.TokenCounter` satisfies it.
:func:`resolve_token_counter` turns ``None`` into the process-wide default counter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import BaseMessage

from langchain_kimi_context.tokens.default import default_token_counter

__all__ = ["SupportsTokenCounting", "resolve_token_counter"]


@runtime_checkable
class SupportsTokenCounting(Protocol):
    """What the package needs from a token counter (``tokens.TokenCounter`` has it).

    Example:
        >>> isinstance(resolve_token_counter(None), SupportsTokenCounting)
        True
    """

    def count_text(self, text: str) -> int:
        """Tokens of a plain string (no per-message overhead)."""
        ...

    def count_message(self, message: BaseMessage) -> int:
        """Tokens of one message, per-message overhead included."""
        ...

    def count_messages(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of a request: messages, ``tools`` when given, reply priming."""
        ...

    def count_tools(self, tools: Sequence[Any]) -> int:
        """Tokens of tool schemas."""
        ...


def resolve_token_counter(token_counter: SupportsTokenCounting | None) -> SupportsTokenCounting:
    """Return ``token_counter``, or the package's process-wide default counter.

    Args:
        token_counter: A counter, or ``None`` for ``tokens.default_token_counter()``.

    Returns:
        The counter to use.
    """
    return token_counter if token_counter is not None else default_token_counter()
