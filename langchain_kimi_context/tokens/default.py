"""The process-wide default token counter.

Contract: :func:`default_token_counter` creates one :class:`TokenCounter` on first use
(thread-safe) with the default backend; :func:`set_default_token_counter` replaces it
(``None`` resets); :func:`count_tokens_for_model` is LangChain's ``token_counter`` hook.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_kimi_context.tokens.counter import TokenCounter

_default_lock = threading.Lock()
_default_counter: TokenCounter | None = None


def default_token_counter() -> TokenCounter:
    """Return the process-wide :class:`TokenCounter` (created on first use).

    The backend is the Kimi vocabulary named by ``KIMI_TOKENIZER_PATH`` when set, else
    :class:`ApproximateBackend` (the fallback is reported in one INFO log line).

    Returns:
        The shared counter.

    Example:
        >>> default_token_counter() is default_token_counter()
        True
    """
    global _default_counter
    counter = _default_counter
    if counter is not None:
        return counter
    with _default_lock:
        if _default_counter is None:
            _default_counter = TokenCounter()
        return _default_counter


def set_default_token_counter(counter: TokenCounter | None) -> None:
    """Replace the process-wide counter (``None`` recreates it on next use).

    Args:
        counter: The counter every component without an explicit one should use.

    Example:
        >>> from langchain_kimi_context.tokens import ApproximateBackend
        >>> previous = default_token_counter()
        >>> set_default_token_counter(TokenCounter(backend=ApproximateBackend()))
        >>> default_token_counter() is previous
        False
        >>> set_default_token_counter(previous)
    """
    global _default_counter
    if counter is not None and not isinstance(counter, TokenCounter):
        raise TypeError(f"expected a TokenCounter or None, got {type(counter).__name__}")
    with _default_lock:
        _default_counter = counter


def count_tokens_for_model(
    messages: Sequence[BaseMessage | Any],
    tools: Sequence[Any] | None = None,
    *,
    model: str | None = None,
) -> int:
    """Count a request for a Kimi model locally (for ``get_num_tokens_from_messages``).

    All Kimi models share one tokenizer family, so ``model`` does not change the count
    today; it is accepted so callers need not change when that stops being true.

    Args:
        messages: The messages.
        tools: Tool schemas sent with them.
        model: The model name.

    Returns:
        The local estimate from :func:`default_token_counter` (no network).

    Example:
        >>> from langchain_core.messages import HumanMessage
        >>> count_tokens_for_model([HumanMessage("hi")], model="kimi-k2.6") > 0
        True
    """
    del model
    return default_token_counter().count_messages(messages, tools)
